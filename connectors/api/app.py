"""The query API application: ``build_app(settings)`` (tests: aiohttp's test client) and
``run_api(settings, stop)`` (the ``api`` role).

Start-up, in order: open the SQL store (migrated), Milvus and the media store; connect the Kafka producer
(when ``bootstrap_servers`` is set) and provision the topics; create the built-in admin user; republish every
watch list, dossier and camera from the SQL store to ``gallery-changes`` and ``cameras`` (the embedded broker
keeps nothing across restarts, and consumers replay those changelogs from the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from connectors.api import auth, routes_docs, routes_entities, routes_events, routes_faces, routes_notify
from connectors.api.core import (
    ApiError,
    ContractError,
    RouteInfo,
    RouteTable,
    error_payload,
    json_response,
    validation_fields,
)
from connectors.api.faces import FaceService
from connectors.api.openapi import openapi_document
from connectors.api.routes_entities import publish_dossier
from connectors.api.state import STATE, ApiState, Publisher
from connectors.media import open_media_store
from connectors.sql.engine import open_sql
from connectors.sql.repositories import (
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    ReferenceError_,
    camera_changed,
    watch_list_changed,
)
from connectors.vectors import open_vectors
from pipeline.settings import Settings
from schemas.topics import CAMERAS, CORE_TOPICS, GALLERY

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
    return [auth.routes, routes_entities.routes, routes_events.routes, routes_faces.routes, routes_notify.routes,
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
           code: str | None = None) -> web.Response:
    return json_response(error_payload(status, message, details, code), status)


async def _answer(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.fields, exc.code)
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


def build_app(settings: Settings) -> web.Application:
    """The aiohttp application; stores and the producer open on startup and close on cleanup."""
    app = web.Application(middlewares=[error_middleware, auth.auth_middleware],
                          client_max_size=settings.api.max_upload_bytes * 2 + 1024 * 1024)
    infos: list[RouteInfo] = []
    for table in _route_tables():
        table.install(app)
        infos.extend(table.routes)
    app[auth.ROUTE_INFO] = {r.handler: r for r in infos}
    app[OPENAPI] = openapi_document(infos)
    app[STRICT_CONTRACT] = settings.api.contract_checks == "fail"
    app.cleanup_ctx.append(_lifespan(settings))
    return app


def _lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            engine = await open_sql(settings)
            stack.push_async_callback(engine.dispose)
            vectors = await open_vectors(settings)
            stack.push_async_callback(vectors.close)
            loop = asyncio.get_running_loop()
            media = await loop.run_in_executor(None, open_media_store, settings)
            producer = await _producer(settings)
            if producer is not None:
                stack.push_async_callback(producer.close)
            st = ApiState(settings, engine, vectors, media, FaceService(settings.models), Publisher(producer))
            app[STATE] = st
            await auth.ensure_admin_user(st)
            if producer is not None:
                await republish(st)
            yield
            for task in list(st.background):
                task.cancel()
            st.publisher.producer = None  # let librdkafka go once closed (it retries a gone broker otherwise)
    return lifespan


async def _producer(settings: Settings):  # type: ignore[no-untyped-def]
    if not settings.bootstrap_servers:
        log.warning("no bootstrap_servers: the API stores changes but cannot publish them")
        return None
    from pipeline.kafka import AsyncProducer, provision_topics

    await asyncio.get_running_loop().run_in_executor(None, provision_topics, settings, CORE_TOPICS)
    return AsyncProducer(settings, client_id="facestream-api")


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


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the API on ``api.host:api.port`` until ``stop`` is set (the ``api`` role)."""
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.api.host, settings.api.port)
    await site.start()
    log.info("query API listening on http://%s:%d/v1", settings.api.host, settings.api.port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
