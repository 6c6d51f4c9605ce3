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

from aiohttp import web
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from connectors.api import auth, routes_entities, routes_events, routes_faces, routes_notify
from connectors.api.core import ApiError, RouteInfo, RouteTable, json_response, validation_fields
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
OPENAPI = web.AppKey("facestream_openapi", dict)

docs = RouteTable()


@docs.add("GET", "/v1/openapi.json", "This OpenAPI document", "ops", access="public")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def _route_tables() -> list[RouteTable]:
    return [auth.routes, routes_entities.routes, routes_events.routes, routes_faces.routes, routes_notify.routes,
            docs]


@web.middleware
async def error_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Every failure answers JSON ``{"error": ..., "fields": ...}`` with the right status; counts requests."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        return json_response({"error": exc.message, "fields": exc.fields}, exc.status)
    except ValidationError as exc:
        status = 422
        return json_response({"error": "invalid fields", "fields": validation_fields(exc)}, 422)
    except ReferenceError_ as exc:
        status = 422
        return json_response({"error": str(exc), "fields": [{"loc": [exc.field], "msg": "unknown id"}]}, 422)
    except InvalidCursorError:
        status = 400
        return json_response({"error": "cursor: not a cursor this API issued (pass back `next_cursor`)",
                              "fields": [{"loc": ["cursor"], "msg": "invalid"}]}, 400)
    except NotFoundError as exc:
        status = 404
        return json_response({"error": f"not found: {exc}", "fields": None}, 404)
    except ConflictError as exc:
        status = 409
        return json_response({"error": str(exc), "fields": None}, 409)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        return json_response({"error": exc.reason, "fields": None}, exc.status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": "internal error", "fields": None}, 500)
    finally:
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


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
