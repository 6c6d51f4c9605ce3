"""The query API application: ``build_app(state)`` (tests: aiohttp's test client) and ``ApiRole`` (the
``api`` role). The composition root (``ops/root.py``) opens the stores and the producer and builds the
``ApiState`` that holds them with every repository.

Start-up, in order: create the built-in admin user; load the media URL key (``api.media_url_secret``, or
the one kept in the SQL store) and make the dummy password hash of unknown users; republish every watch
list, dossier and camera from the SQL store to ``gallery-changes`` and ``cameras`` when a broker is
configured (the embedded broker keeps nothing across restarts, and consumers replay those changelogs from the
start); re-queue or fail the videos a restart interrupted (``connectors/api/resume.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from connectors.api import (
    auth,
    routes_docs,
    routes_entities,
    routes_events,
    routes_faces,
    routes_liveness,
    routes_notify,
)
from connectors.api.core import (
    FORM_LIMIT,
    ApiError,
    ContractError,
    RouteInfo,
    RouteTable,
    error_payload,
    json_response,
    validation_fields,
)
from connectors.api.openapi import openapi_document
from connectors.api.resume import resume_videos
from connectors.api.routes_entities import publish_dossier
from connectors.api.state import STATE, ApiState
from connectors.sql.base import ConflictError, InvalidCursorError, NotFoundError, ReferenceError_
from connectors.sql.entities import camera_changed, watch_list_changed
from connectors.sql.users import shared_secret
from pipeline.runtime import FatalRoleError
from schemas.topics import CAMERAS, GALLERY

log = logging.getLogger(__name__)

REQUESTS = Counter("facestream_api_requests_total", "API requests answered.", ["method", "route", "status"])
LATENCY = Histogram("facestream_api_request_seconds", "API request time.", ["method", "route"])
CONTRACT_VIOLATIONS = Counter("facestream_api_contract_violations_total",
                              "Answers whose status their operation does not declare.", ["method", "route"])
OPENAPI = web.AppKey("facestream_openapi", dict)
STRICT_CONTRACT = web.AppKey("facestream_strict_contract", bool)

docs = RouteTable()


@docs.add("GET", "/v1/openapi.json", "This OpenAPI document", "ops", access="public", raw="application/json")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def _route_tables() -> list[RouteTable]:
    return [auth.routes, routes_entities.routes, routes_events.routes, routes_faces.routes, routes_liveness.routes,
            routes_notify.routes,
            docs, routes_docs.routes]


@web.middleware
async def error_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Every failure answers ``{"error": {"code", "message", "details"}}`` (``ErrorBody``) with the right
    status; an answer whose status its operation does not declare is a contract violation (logged, and a 500
    when ``api.contract_checks`` is ``fail``); counts requests."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await _answer(request, handler)
        status = response.status
        info = getattr(request.match_info.handler, "route_info", None)
        if isinstance(info, RouteInfo) and status not in info.allowed_statuses():
            log.error("contract violation: %s %s answered %d, not declared", request.method, route, status)
            CONTRACT_VIOLATIONS.labels(request.method, route).inc()
            if request.app[STRICT_CONTRACT]:
                undeclared, status = status, 500
                return _error(500, f"contract violation: status {undeclared} is not declared", code="contract")
        return response
    finally:
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    response = json_response(error_payload(status, message, details, code), status)
    response.headers.update(headers or {})
    return response


async def _answer(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.fields, exc.code, exc.headers)
    except ValidationError as exc:
        return _error(422, "invalid fields", validation_fields(exc))
    except ReferenceError_ as exc:
        return _error(422, str(exc), [{"loc": [exc.field], "msg": "unknown id"}], "unknown_reference")
    except InvalidCursorError:
        return _error(400, "cursor: not a cursor this API issued (pass back `next_cursor`)",
                      [{"loc": ["cursor"], "msg": "invalid"}], "invalid_cursor")
    except NotFoundError as exc:
        return _error(404, f"not found: {exc}")
    except ConflictError as exc:
        return _error(409, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except ContractError:
        log.exception("contract violation on %s %s", request.method, request.path)
        return _error(500, "internal error: the answer broke the API contract", code="contract")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal error")


def build_app(st: ApiState) -> web.Application:
    """The aiohttp application over ``st`` (whose stores the caller opened and closes)."""
    settings = st.settings
    app = web.Application(middlewares=[error_middleware, auth.auth_middleware],
                          client_max_size=settings.api.max_upload_bytes * 2 + 1024 * 1024)
    infos: list[RouteInfo] = []
    for table in _route_tables():
        table.install(app)
        infos.extend(table.routes)
    app[auth.ROUTE_INFO] = {r.handler: r for r in infos}
    app[OPENAPI] = openapi_document(infos)
    app[STRICT_CONTRACT] = settings.api.contract_checks == "fail"
    app[FORM_LIMIT] = settings.api.max_upload_bytes
    app.cleanup_ctx.append(_lifespan(st))
    return app


def _lifespan(st: ApiState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        app[STATE] = st
        await auth.ensure_admin_user(st)
        secret = st.settings.api.media_url_secret
        st.media_urls.set_key(secret.get_secret_value() if secret is not None
                              else await shared_secret(st.engine, "media_url"))
        await auth.dummy_hash(st)
        if st.publisher.producer is not None:
            await republish(st)
            await resume_videos(st)
            st.camera_health.start(st.settings)
        yield
        for task in list(st.background):
            task.cancel()
        await st.camera_health.stop()
    return lifespan


async def republish(st: ApiState) -> int:
    """Publish the full gallery (watch lists, then dossiers) and every camera from the SQL store."""
    count = 0
    for wl in await st.watch_lists.list_all():
        await st.publisher.publish(GALLERY, wl.id, watch_list_changed(wl))
        count += 1
    for dossier_id in await st.dossiers.all_ids():
        await publish_dossier(st, dossier_id)
        count += 1
    for camera in await st.cameras.list_all():
        await st.publisher.publish(CAMERAS, camera.id, camera_changed(camera))
        count += 1
    log.info("republished %d watch lists, dossiers and cameras", count)
    return count


class ApiRole:
    """The ``api`` role: serve ``build_app(state)`` on ``api.host:api.port`` until ``stop`` is set."""

    name = "api"

    def __init__(self, *, state: ApiState) -> None:
        self.state = state

    async def run(self, stop: asyncio.Event) -> None:
        api = self.state.settings.api
        runner = web.AppRunner(build_app(self.state), access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, api.host, api.port).start()
            except OSError as exc:  # a port in use will not free itself: stop `up` instead of a restart loop
                raise FatalRoleError(f"the query API cannot listen on {api.host}:{api.port}: {exc.strerror}") from exc
            log.info("query API listening on http://%s:%d/v1", api.host, api.port)
            await stop.wait()
        finally:
            await runner.cleanup()
