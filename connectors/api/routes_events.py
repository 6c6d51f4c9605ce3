"""Events (list, get, acknowledge, websocket feed), uploaded videos, and media files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from connectors.api.auth import CALLER, Caller, caller_of, current_user
from connectors.api.core import ApiError, EventQuery, FormField, ListQuery, RouteTable, page, path_id
from connectors.api.state import ApiState, state
from connectors.api.uploads import VIDEO_EXTENSIONS, probe_video, stream_file_field
from connectors.api.video_urls import fetch_video
from connectors.media import MediaNotFoundError, content_type_of
from connectors.sql.base import NotFoundError, new_id
from schemas.api import (
    BulkAcknowledgeIn,
    BulkAcknowledgeResponse,
    CameraOut,
    EventOut,
    Page,
    VideoDeleteQuery,
    VideoOut,
    VideoUrlIn,
)
from schemas.base import SchemaError
from schemas.messages import FaceEvent, VideoJob
from schemas.topics import EVENTS, VIDEO_JOBS

log = logging.getLogger(__name__)
routes = RouteTable()


# --- events -------------------------------------------------------------------------------------------------

@routes.add("GET", "/v1/events", "List events with filters (episode, video, camera, watch list, ...), newest first "
            "or in `ordering`", "events")
async def list_events(request: web.Request, query: EventQuery) -> Page[EventOut]:
    return page(*await state(request).events.list_page(query, query.limit, query.cursor, query.ordering))


@routes.add("POST", "/v1/events/acknowledge", "Acknowledge many events: by ids and/or by filters", "events")
async def acknowledge_events(request: web.Request, body: BulkAcknowledgeIn) -> BulkAcknowledgeResponse:
    filters = body.filters
    if not body.ids and (filters is None or not filters.model_dump(exclude_none=True)):
        raise ApiError(422, "name the events: ids, or at least one filter", [{"loc": ["ids"], "msg": "empty"}])
    count = await state(request).events.acknowledge_many(current_user(request).username, body.ids, filters)
    return BulkAcknowledgeResponse(acknowledged=count)


@routes.add("GET", "/v1/events/{id}", "Get an event with the URLs of its thumbnail and full frame", "events")
async def get_event(request: web.Request) -> EventOut:
    return await state(request).events.get(path_id(request))


@routes.add("POST", "/v1/events/{id}/acknowledge", "Acknowledge an event", "events")
async def acknowledge_event(request: web.Request) -> EventOut:
    user = current_user(request)
    return await state(request).events.acknowledge(path_id(request), user.username)


@routes.add("GET", "/v1/ws/events", "Websocket: every new event as a JSON `FaceEvent` message (auth with "
            "`?token=` or the header)", "events", raw="application/json", status=101, errors=(400, 503),
            credentials="query",
            description="The socket lives as long as its token: it closes (code 1008, reason `token expired` "
                        "or `token revoked`) when the token expires or its session ends (logout, password "
                        "change, user deleted). Send `{\"token\": \"<new access token>\"}` on it after a "
                        "refresh to keep it open.")
async def events_socket(request: web.Request) -> web.StreamResponse:
    """Consumes the events topic from the earliest offset with no group (no rebalance wait, nothing left
    behind in the broker) and forwards only records produced after the socket opened: Tansu misreports end
    offsets, so "latest" cannot be trusted."""
    st = state(request)
    if st.publisher.producer is None:
        raise ApiError(503, "no Kafka broker configured")
    ws = web.WebSocketResponse(heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "this is a websocket: send an Upgrade: websocket request")
    await ws.prepare(request)
    opened_ms = int(time.time() * 1000) - 1000
    guard = SocketGuard(st, ws, request[CALLER])
    tasks = [asyncio.create_task(_forward_events(st.settings, ws, opened_ms), name="ws-events"),
             asyncio.create_task(guard.run(), name="ws-auth")]
    try:
        async for msg in ws:  # the client may send a fresh token; this ends when either side closes
            if msg.type == WSMsgType.ERROR:
                break
            if msg.type == WSMsgType.TEXT:
                await guard.offered(msg.data)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return ws


class SocketGuard:
    """Closes a websocket when its token expires or is revoked: it sleeps until the token's expiry or
    ``api.ws_auth_recheck_s``, whichever comes first, or until this process revokes any session
    (``ApiState.sessions_revoked``), then checks the token again. A newer token of the same user sent on the
    socket (``{"token": ...}``) replaces it."""

    def __init__(self, st: ApiState, ws: web.WebSocketResponse, caller: Caller) -> None:
        self.st, self.ws, self.caller = st, ws, caller
        self.wake = asyncio.Event()

    async def run(self) -> None:
        self.st.session_watchers.add(self.wake)
        try:
            while not self.ws.closed:
                expires = self.caller.expires_at
                wait = self.st.settings.api.ws_auth_recheck_s
                if expires is not None:
                    wait = min(wait, max(expires - time.time(), 0.0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
                self.wake.clear()
                if expires is not None and time.time() >= expires:
                    await self._close("token expired")
                elif await caller_of(self.st, self.caller.token) is None:
                    await self._close("token revoked")
        except Exception:  # the check itself failed (store down): close rather than stream unchecked
            log.exception("websocket token check failed")
            await self._close("token check failed")
        finally:
            self.st.session_watchers.discard(self.wake)

    async def offered(self, data: str) -> None:
        """A message from the client: ``{"token": "<access token>"}`` extends the socket's life to that
        token's (same user only); anything else is ignored."""
        try:
            token = orjson.loads(data).get("token")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if not isinstance(token, str) or not token or len(token) > 256:
            return
        caller = await caller_of(self.st, token)
        if caller is None or caller.user.id != self.caller.user.id:
            await self.ws.send_str(orjson.dumps({"error": "token refused: the socket keeps its old one"}).decode())
            return
        self.caller = caller
        self.wake.set()

    async def _close(self, reason: str) -> None:
        log.info("websocket of %s closed: %s", self.caller.user.username, reason)
        await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())


async def _forward_events(settings: object, ws: web.WebSocketResponse, since_ms: int) -> None:
    from aiokafka import TopicPartition

    from pipeline.kafka import make_consumer, topic_name

    consumer = make_consumer(settings, [], None)  # type: ignore[arg-type]
    await consumer.start()
    try:
        name = topic_name(settings, EVENTS)  # type: ignore[arg-type]
        partitions = consumer.partitions_for_topic(name)
        while partitions is None:
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(name) or None
            if partitions is None:
                await asyncio.sleep(0.5)
        consumer.assign([TopicPartition(name, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while not ws.closed:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.timestamp < since_ms:
                        continue
                    try:
                        message = EVENTS.decode(record.value)
                    except SchemaError:
                        log.debug("websocket feed: skipping an undecodable event record")
                        continue
                    if isinstance(message, FaceEvent):
                        await ws.send_str(message.model_dump_json(exclude={"descriptor"}))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        await consumer.stop()


# --- videos -------------------------------------------------------------------------------------------------

@routes.add("POST", "/v1/videos", "Upload a video for offline processing through the pipeline", "videos",
            form=(FormField("file", "The video file (mp4, mkv, avi, mov, webm, ...).", file=True),
                  FormField("camera_group", "Camera group id its events belong to (default `default`).",
                            required=False),
                  FormField("camera", "An existing, inactive camera to attribute the events to (its group "
                                      "then applies).", required=False),
                  FormField("started_at", "When the video's first frame was shot: UNIX seconds or ISO 8601 "
                            "(default: the upload time). Event timestamps are this plus their `offset_s`.",
                            required=False)),
            status=201, errors=(503,))
async def upload_video(request: web.Request) -> VideoOut:
    st = state(request)
    video_id = new_id()
    uploaded_at = time.time()
    tmp = _tmp_path(st, video_id)
    try:
        with open(tmp, "wb") as out:  # noqa: ASYNC230 - writes go through the executor
            filename, fields = await stream_file_field(request, "file", out, st.settings.api.max_video_bytes)
        unknown = set(fields) - UPLOAD_FIELDS
        if unknown:
            raise ApiError(422, f"unknown form fields: {', '.join(sorted(unknown))}",
                           [{"loc": [name], "msg": "extra fields not permitted"} for name in sorted(unknown)])
        started_at = parse_started_at(fields.get("started_at"), uploaded_at)
        return await _register(st, video_id, tmp, filename, fields.get("camera_group") or "default",
                               fields.get("camera") or None, started_at)
    finally:
        tmp.unlink(missing_ok=True)


UPLOAD_FIELDS = frozenset({"camera_group", "camera", "started_at"})


def _tmp_path(st: ApiState, video_id: str) -> Path:
    tmp_dir = Path(st.settings.data_dir) / "uploads"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return tmp_dir / f"{video_id}.part"


async def _register(st: ApiState, video_id: str, tmp: Path, filename: str, group: str, camera_id: str | None,
                    started_at: float) -> VideoOut:
    """Check the file and the attribution, move the file into the media store, record the video and queue its
    job (nothing is left behind on a refusal)."""
    loop = asyncio.get_running_loop()
    ext = Path(filename).suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ApiError(415, f"file: unsupported video extension {ext or '(none)'!r}")
    if len(group) > 128:
        raise ApiError(422, "camera_group: at most 128 characters", [{"loc": ["camera_group"], "msg": "too long"}])
    decode_as, labels = f"video:{video_id}", dict[str, str]()
    if camera_id is not None:
        camera = await _attributable_camera(st, camera_id)
        decode_as, group, labels = camera.id, camera.camera_group, dict(camera.labels)
    try:
        await st.groups.get(group)
    except NotFoundError as exc:
        raise ApiError(422, f"camera_group: unknown id {group!r}",
                       [{"loc": ["camera_group"], "msg": "unknown id"}]) from exc
    await loop.run_in_executor(None, probe_video, tmp)
    key: str | None = f"videos/{video_id}{ext}"
    assert key is not None
    try:
        path = await loop.run_in_executor(None, _store_video, st.media, key, tmp)
        video = await st.videos.create(video_id, Path(filename).name[:500], key, decode_as, group, started_at)
        try:
            await st.publisher.publish(VIDEO_JOBS, video_id, VideoJob(
                video_id=video_id, path=path, camera_id=video.camera_id, camera_group=group,
                started_at=started_at, labels=labels))
        except ApiError:
            await st.videos.delete(video_id)
            raise
        key = None  # kept
        return video
    finally:
        if key is not None:
            await loop.run_in_executor(None, st.media.delete, key)


async def _attributable_camera(st: ApiState, camera_id: str) -> CameraOut:
    """The camera a video's events are attributed to: it must exist and not be decoding live (its frames
    would interleave with the file's on one tracker)."""
    if len(camera_id) > 128:
        raise ApiError(422, "camera: at most 128 characters", [{"loc": ["camera"], "msg": "too long"}])
    try:
        camera = await st.cameras.get(camera_id)
    except NotFoundError as exc:
        raise ApiError(422, f"camera: unknown id {camera_id!r}", [{"loc": ["camera"], "msg": "unknown id"}],
                       "unknown_reference") from exc
    if camera.active:
        raise ApiError(422, f"camera: {camera_id!r} is active (decoding live); deactivate it to attribute a video "
                            "to it", [{"loc": ["camera"], "msg": "camera is active"}], "camera_active")
    return camera


@routes.add("POST", "/v1/videos/from-url", "Fetch a video from an http(s) URL and process it like an upload",
            "videos", status=201, errors=(413, 415, 503))
async def video_from_url(request: web.Request, body: VideoUrlIn) -> VideoOut:
    st = state(request)
    video_id = new_id()
    tmp = _tmp_path(st, video_id)
    try:
        filename = await fetch_video(st.settings, body.url, tmp)
        started_at = time.time() if body.started_at is None else body.started_at
        return await _register(st, video_id, tmp, filename, body.camera_group, body.camera, started_at)
    finally:
        tmp.unlink(missing_ok=True)


@routes.add("DELETE", "/v1/videos/{id}", "Delete an uploaded video with its file, events and episodes", "videos",
            errors=(409,), description=(
                "Deletes the video's record and file and, unless `keep_events=true`, every event found in it "
                "(rows, face vectors, thumbnails and frames no other event uses) and its episodes, as FindFace "
                "and LUNA delete what a video produced with it. Counter records (counts, no faces) and "
                "notifications already delivered stay. A video still `queued` or `processing` is refused (409): "
                "its events are still arriving."))
async def delete_video(request: web.Request, query: VideoDeleteQuery) -> None:
    st = state(request)
    video = await st.videos.get(path_id(request))
    if video.status in ("queued", "processing"):
        raise ApiError(409, f"video {video.id} is still {video.status}: delete it once it is done or failed",
                       code="video_processing")
    loop = asyncio.get_running_loop()
    if not query.keep_events:
        while True:  # events first: a failure half-way leaves the video listed, so the delete can be retried
            removed = await st.events.delete_of_video(video.id)
            if not removed.event_ids:
                break
            await st.vectors.delete_events(removed.event_ids)
            await loop.run_in_executor(None, _delete_media, st, removed.media_keys)
        await st.episodes.delete_of_video(video.id)
    key = await st.videos.delete(video.id)
    await loop.run_in_executor(None, st.media.delete, key)


def _delete_media(st: ApiState, keys: list[str]) -> None:
    for key in keys:
        st.media.delete(key)


def parse_started_at(raw: str | None, default: float) -> float:
    """The ``started_at`` form field: UNIX seconds or an ISO 8601 time (naive means UTC); 422 otherwise."""
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(422, "started_at: expected UNIX seconds or an ISO 8601 time",
                       [{"loc": ["started_at"], "msg": "invalid time"}]) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _store_video(media: object, key: str, tmp: Path) -> str:
    """Move the upload into the media store; returns the path decoders open (local) or the key (S3)."""
    local = media.local_path(key)  # type: ignore[attr-defined]
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(local)
        return str(local)
    media.put_file(key, tmp, content_type_of(key))  # type: ignore[attr-defined]  # streamed, not read whole
    return key


@routes.add("GET", "/v1/videos", "List uploaded videos, newest first", "videos")
async def list_videos(request: web.Request, query: ListQuery) -> Page[VideoOut]:
    return page(*await state(request).videos.list_page(query.limit, query.cursor))


@routes.add("GET", "/v1/videos/{id}", "Status and progress of an uploaded video", "videos")
async def get_video(request: web.Request) -> VideoOut:
    return await state(request).videos.get(path_id(request))


# --- media --------------------------------------------------------------------------------------------------

@routes.add("GET", "/v1/media/{key:.+}", "A stored image (thumbnail, frame, dossier photo)", "media", raw="*/*",
            credentials="signed",
            description="Read it with the Authorization header, or through the signed URL (`expires`, `sig`) "
                        "the API answered for it (for `<img src>`), valid api.media_url_ttl_s. A token in the "
                        "query string is not accepted.")
async def get_media(request: web.Request) -> web.Response:
    st = state(request)
    key = request.match_info["key"]
    try:
        data = await asyncio.get_running_loop().run_in_executor(None, st.media.get, key)
    except (MediaNotFoundError, ValueError) as exc:
        raise ApiError(404, f"no media {key!r}") from exc
    expires = request.query.get("expires", "")
    max_age = min(3600, int(int(expires) - time.time())) if expires.isdigit() else 3600  # not past the URL's end
    return web.Response(body=data, content_type=content_type_of(key),
                        headers={"Cache-Control": f"private, max-age={max(max_age, 0)}"})
