"""Authentication and authorisation: ``Authorization: Token <token>`` on every call but login, health,
the OpenAPI document and /metrics; roles admin > operator > viewer (viewers read, operators write,
admins also manage users). ``api.admin_token`` (env ``FACESTREAM_ADMIN_TOKEN``) is an admin token for
automation; the built-in user ``admin`` gets ``api.admin_password`` at first start."""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web

from connectors.api.core import RANK, ApiError, ListQuery, RouteInfo, RouteTable, page, path_id
from connectors.api.state import ApiState, state
from connectors.sql.base import ConflictError
from connectors.sql.users import check_password, hash_password
from schemas.api import LoginRequest, LoginResponse, Page, UserIn, UserOut

log = logging.getLogger(__name__)

routes = RouteTable()
USER: web.RequestKey[UserOut] = web.RequestKey("facestream_user", UserOut)
ROUTE_INFO: web.AppKey[dict[object, RouteInfo]] = web.AppKey("facestream_routes", dict)
ADMIN_TOKEN_USER = UserOut(id="admin-token", username="admin-token", role="admin", created_at=0.0)


def request_token(request: web.Request) -> str | None:
    """The token from ``Authorization: Token x`` (or ``Bearer x``), or the ``token`` query parameter (for
    ``<img src>`` and websockets, which cannot send headers)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return request.query.get("token") or None


async def authenticate(request: web.Request) -> UserOut:
    token = request_token(request)
    if not token:
        raise ApiError(401, "authentication required: send `Authorization: Token <token>` (POST /v1/auth/login)")
    st = state(request)
    admin = st.settings.api.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return ADMIN_TOKEN_USER
    user = await st.users.user_for_token(token)
    if user is None:
        raise ApiError(401, "invalid or revoked token")
    return user


@web.middleware
async def auth_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    route = request.match_info.route
    if route.resource is None:  # no such route: let aiohttp answer 404/405
        return await handler(request)
    info = request.app[ROUTE_INFO].get(route.handler)
    # routes added outside the route table (routes_notify) need a viewer to read and an operator to write
    access = info.access if info else ("viewer" if request.method in ("GET", "HEAD") else "operator")
    if access == "public":
        return await handler(request)
    user = await authenticate(request)
    if RANK[user.role] < RANK[access]:
        raise ApiError(403, f"role {user.role} may not do this (needs {access})")
    request[USER] = user
    return await handler(request)


def current_user(request: web.Request) -> UserOut:
    return request[USER]


async def ensure_admin_user(st: ApiState) -> None:
    """Create the built-in ``admin`` user with ``api.admin_password`` if it does not exist yet."""
    if await st.users.by_username("admin") is not None:
        return
    hashed = await asyncio.get_running_loop().run_in_executor(
        None, hash_password, st.settings.api.admin_password.get_secret_value())
    try:
        await st.users.create("admin", hashed, "admin")
        log.info("created the built-in admin user")
    except ConflictError:
        pass  # created concurrently


@routes.add("POST", "/v1/auth/login", "Log in: exchange user and password for a token", "auth", access="public",
            errors=(401,))
async def login(request: web.Request, body: LoginRequest) -> LoginResponse:
    st = state(request)
    found = await st.users.by_username(body.username)
    ok = found is not None and await asyncio.get_running_loop().run_in_executor(
        None, check_password, body.password, found.password_hash)
    if not ok or found is None:
        raise ApiError(401, "wrong user name or password")
    token = await st.users.issue_token(found.user.id)
    return LoginResponse(token=token, user=found.user)


@routes.add("POST", "/v1/auth/logout", "Revoke the token of this request", "auth", access="viewer")
async def logout(request: web.Request) -> None:
    token = request_token(request)
    if token:
        await state(request).users.revoke_token(token)


@routes.add("GET", "/v1/auth/me", "The calling user", "auth")
async def me(request: web.Request) -> UserOut:
    return current_user(request)


@routes.add("GET", "/v1/users", "List users", "auth", access="admin")
async def list_users(request: web.Request, query: ListQuery) -> Page[UserOut]:
    return page(*await state(request).users.list_page(query.limit, query.cursor))


@routes.add("POST", "/v1/users", "Create a user", "auth", access="admin", status=201, errors=(409,))
async def create_user(request: web.Request, body: UserIn) -> UserOut:
    hashed = await asyncio.get_running_loop().run_in_executor(None, hash_password, body.password)
    return await state(request).users.create(body.username, hashed, body.role)


@routes.add("DELETE", "/v1/users/{id}", "Delete a user (and revoke its tokens)", "auth", access="admin")
async def delete_user(request: web.Request) -> None:
    await state(request).users.delete(path_id(request))
