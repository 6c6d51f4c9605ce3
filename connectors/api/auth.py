"""Authentication and authorisation: ``Authorization: Token <token>`` on every call but login, refresh,
health, the OpenAPI document and /metrics; roles admin > operator > viewer (viewers read, operators write,
admins also manage users). ``api.admin_token`` (env ``FACESTREAM_ADMIN_TOKEN``) is an admin token for
automation (it does not expire).

Sessions: a login answers an access token (``api.access_token_ttl_s``) and a refresh token
(``api.refresh_token_ttl_s``), exchanged once at ``POST /v1/auth/refresh`` for the next pair. A token is
accepted in the query string only by the websocket (browsers cannot send it headers); media are read with
the header or through the signed URLs the API answers (``connectors/api/media_urls.py``). Failed logins are
throttled per user name and per address (429 with ``Retry-After``); an unknown user name is checked against a
dummy hash, so it answers no faster than a known one.

The built-in user ``admin`` has no fixed default password: ``api.admin_password`` (env
``FACESTREAM_API_ADMIN_PASSWORD``), when set, is applied at every start; unset, the first start (no admin
at all yet) generates a random one and logs it once. A deleted ``admin`` comes back only with a configured
password, or with a fresh random one when no admin is left. ``POST /v1/auth/password`` changes the caller's
own password. ``check_bind_policy`` refuses an API reachable beyond loopback while the admin password is a
known default."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import secrets
from dataclasses import dataclass

from aiohttp import web

from connectors.api.core import RANK, ApiError, ListQuery, RouteInfo, RouteTable, page, path_id
from connectors.api.media_urls import MediaUrlError
from connectors.api.state import ApiState, state
from connectors.sql.base import ConflictError
from connectors.sql.users import Lifetimes, Session, UserRepository, check_password, hash_password
from pipeline.settings import Settings
from schemas.api import LoginRequest, LoginResponse, Page, PasswordChange, RefreshRequest, UserIn, UserOut

log = logging.getLogger(__name__)

routes = RouteTable()
USER: web.RequestKey[UserOut] = web.RequestKey("facestream_user", UserOut)
ROUTE_INFO: web.AppKey[dict[object, RouteInfo]] = web.AppKey("facestream_routes", dict)
ADMIN_TOKEN_USER = UserOut(id="admin-token", username="admin-token", role="admin", created_at=0.0)


@dataclass(frozen=True)
class Caller:
    """Who made a request with which token; ``expires_at`` None for the configured admin token."""

    user: UserOut
    token: str
    expires_at: float | None


CALLER: web.RequestKey[Caller] = web.RequestKey("facestream_caller", Caller)


def request_token(request: web.Request, query: bool = False) -> str | None:
    """The token from ``Authorization: Token x`` (or ``Bearer x``); with ``query``, also the ``token`` query
    parameter (only the websocket accepts one: browsers cannot send it headers)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return (request.query.get("token") or None) if query else None


async def authenticate(request: web.Request, query: bool = False) -> Caller:
    token = request_token(request, query)
    if not token:
        hint = (" (a token in the query string is accepted only by the websocket; media: use the signed URL the "
                "API answered)") if "token" in request.query else ""
        raise ApiError(401, "authentication required: send `Authorization: Token <token>` (POST /v1/auth/login)"
                       + hint)
    caller = await caller_of(state(request), token)
    if caller is None:
        raise ApiError(401, "invalid, expired or revoked token (POST /v1/auth/refresh or log in again)")
    return caller


async def caller_of(st: ApiState, token: str) -> Caller | None:
    """The caller a token stands for now (None: unknown, expired or revoked)."""
    admin = st.settings.api.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return Caller(ADMIN_TOKEN_USER, token, None)
    owner = await st.users.user_for_token(token)
    return None if owner is None else Caller(owner.user, token, owner.expires_at)


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
    if info is not None and info.credentials == "signed" and ("sig" in request.query or "expires" in request.query):
        try:  # a signed URL the API answered: it grants this one object, for its lifetime
            state(request).media_urls.check(request.match_info["key"], request.query.get("expires"),
                                            request.query.get("sig"))
        except MediaUrlError as exc:
            raise ApiError(403, str(exc), code="bad_signature") from exc
        return await handler(request)
    caller = await authenticate(request, query=info is not None and info.credentials == "query")
    if RANK[caller.user.role] < RANK[access]:
        raise ApiError(403, f"role {caller.user.role} may not do this (needs {access})")
    request[USER] = caller.user
    request[CALLER] = caller
    return await handler(request)


def current_user(request: web.Request) -> UserOut:
    return request[USER]


WEAK_PASSWORDS = frozenset({"admin", "password", "changeme", "facestream", "123456", "12345678", "secret"})
MIN_PASSWORD = 8


class InsecureBindError(RuntimeError):
    """The API would be reachable beyond loopback with a default or weak admin password."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere


def weak_password(password: str) -> bool:
    return password.lower() in WEAK_PASSWORDS or len(password) < MIN_PASSWORD


async def check_bind_policy(settings: Settings, users: UserRepository | None) -> None:
    """Raise InsecureBindError when ``api.host`` is not loopback and the admin password (configured, or,
    with ``users``, the stored one of an existing data dir) is a known default."""
    api = settings.api
    if is_loopback(api.host):
        return
    configured = api.admin_password.get_secret_value() if api.admin_password is not None else None
    if configured is not None and weak_password(configured):
        raise InsecureBindError(f"refusing to serve the API on {api.host}: api.admin_password is a default or "
                                f"shorter than {MIN_PASSWORD} characters (set a strong one, or bind 127.0.0.1)")
    found = await users.by_username("admin") if users is not None and configured is None else None
    if found is not None:
        loop = asyncio.get_running_loop()
        for default in sorted(WEAK_PASSWORDS):
            if await loop.run_in_executor(None, check_password, default, found[1]):
                raise InsecureBindError(f"refusing to serve the API on {api.host}: the admin user still has a "
                                        "default password (change it: POST /v1/auth/password, or set "
                                        "FACESTREAM_API_ADMIN_PASSWORD)")


async def ensure_admin_user(st: ApiState) -> str | None:
    """Apply ``api.admin_password`` to the built-in ``admin`` (created if absent); unset and no admin user at
    all: create ``admin`` with a random password, log it once and return it."""
    loop = asyncio.get_running_loop()
    configured = st.settings.api.admin_password
    found = await st.users.by_username("admin")
    if configured is not None:
        password = configured.get_secret_value()
        if found is not None and await loop.run_in_executor(None, check_password, password, found[1]):
            return None
        hashed = await loop.run_in_executor(None, hash_password, password)
        if found is None:
            await _create_admin(st, hashed)
        else:
            await st.users.set_password(found[0].id, hashed)
            log.info("admin password set from api.admin_password (its other sessions revoked)")
        return None
    if found is not None or await st.users.count_admins() > 0:
        return None
    generated = secrets.token_urlsafe(12)
    await _create_admin(st, await loop.run_in_executor(None, hash_password, generated))
    log.warning("created the built-in admin user; its password, shown only this once: %s  (change it with "
                "POST /v1/auth/password, or set FACESTREAM_API_ADMIN_PASSWORD)", generated)
    return generated


async def _create_admin(st: ApiState, hashed: str) -> None:
    try:
        await st.users.create("admin", hashed, "admin")
        log.info("created the built-in admin user")
    except ConflictError:
        pass  # created concurrently


def lifetimes(settings: Settings) -> Lifetimes:
    return Lifetimes(settings.api.access_token_ttl_s, settings.api.refresh_token_ttl_s)


def _session(pair: Session, user: UserOut) -> LoginResponse:
    return LoginResponse(token=pair.access_token, expires_at=pair.access_expires_at,
                         refresh_token=pair.refresh_token, refresh_expires_at=pair.refresh_expires_at, user=user)


@routes.add("POST", "/v1/auth/login", "Log in: exchange user and password for an access and a refresh token",
            "auth", access="public", errors=(401, 429),
            description="Failed logins are throttled per user name and per client address (api.login_* "
                        "settings): beyond the limit the answer is 429 with `Retry-After`. An unknown user "
                        "costs the same password hash as a known one.")
async def login(request: web.Request, body: LoginRequest) -> LoginResponse:
    st = state(request)
    address = request.remote or "unknown"
    wait = st.login_throttle.retry_after(body.username, address)
    if wait > 0:
        raise ApiError(429, f"too many failed logins: try again in {math.ceil(wait)} s",
                       headers={"Retry-After": str(math.ceil(wait))})
    st.login_throttle.attempt(body.username, address)
    found = await st.users.by_username(body.username)
    # an unknown user is checked against a dummy hash: the answer takes as long as for a known one
    stored = found.password_hash if found is not None else await dummy_hash(st)
    ok = await asyncio.get_running_loop().run_in_executor(None, check_password, body.password, stored)
    if not ok or found is None:
        raise ApiError(401, "wrong user name or password")
    st.login_throttle.succeeded(body.username, address)
    return _session(await st.users.open_session(found.user.id, lifetimes(st.settings)), found.user)


async def dummy_hash(st: ApiState) -> str:
    """A password hash of nobody, made with the same function and cost as every user's (once per process)."""
    if not st.dummy_hash:
        st.dummy_hash = await asyncio.get_running_loop().run_in_executor(
            None, hash_password, secrets.token_urlsafe(16))
    return st.dummy_hash


@routes.add("POST", "/v1/auth/refresh", "Exchange a refresh token for a new access and refresh token",
            "auth", access="public", errors=(401,),
            description="Each refresh token works once; presenting one again (a copy) ends its whole session.")
async def refresh(request: web.Request, body: RefreshRequest) -> LoginResponse:
    st = state(request)
    renewed = await st.users.refresh_session(body.refresh_token, lifetimes(st.settings))
    if renewed is None:
        st.sessions_revoked()  # a replayed refresh token may just have ended a session
        raise ApiError(401, "invalid, expired or already used refresh token: log in again")
    return _session(*renewed)


@routes.add("POST", "/v1/auth/logout", "End the session of this request's token (its access and refresh tokens)",
            "auth", access="viewer")
async def logout(request: web.Request) -> None:
    st = state(request)
    await st.users.end_session(request[CALLER].token)
    st.sessions_revoked()


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
    st = state(request)
    await st.users.delete(path_id(request))
    st.sessions_revoked()


@routes.add("POST", "/v1/auth/password", "Change the calling user's password (its other sessions are revoked)",
            "auth", access="viewer", errors=(401, 403, 429))
async def change_password(request: web.Request, body: PasswordChange) -> None:
    user = current_user(request)
    st = state(request)
    found = await st.users.by_username(user.username)
    if found is None or found[0].id != user.id:
        raise ApiError(403, "only a user account has a password (not the admin token)")
    loop = asyncio.get_running_loop()
    address = request.remote or "unknown"
    wait = st.login_throttle.retry_after(user.username, address)
    if wait > 0:  # the same guess budget as logins: a stolen session cannot brute-force the password
        raise ApiError(429, f"too many failed password checks: try again in {math.ceil(wait)} s",
                       headers={"Retry-After": str(math.ceil(wait))})
    st.login_throttle.attempt(user.username, address)
    if not await loop.run_in_executor(None, check_password, body.current_password, found[1]):
        raise ApiError(401, "current_password is wrong")
    st.login_throttle.succeeded(user.username, address)
    if weak_password(body.new_password):
        raise ApiError(422, f"new_password: a known default or shorter than {MIN_PASSWORD} characters",
                       [{"loc": ["new_password"], "msg": "too weak"}])
    await st.users.set_password(user.id, await loop.run_in_executor(None, hash_password, body.new_password),
                                keep_token=request[CALLER].token)
    st.sessions_revoked()
