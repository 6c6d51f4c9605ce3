"""The query API against real components: embedded broker (Tansu), SQLite, Milvus Lite, local media, the
prepared face models. One stack for the whole module."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.episode_rules import EpisodeBuilder
from agents.store_sink import StoreSink
from connectors.api.app import build_app, republish
from connectors.api.state import STATE
from connectors.sql.events import EventRepository
from connectors.sql.videos import VideoRepository
from models.faces import confidences
from ops.broker import EmbeddedBroker
from ops.root import Resources, api_state, open_resources
from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from pipeline.settings import Settings
from pipeline.stage import Incoming
from schemas.messages import FaceEvent, StreamEnd, VideoProgress
from schemas.topics import CAMERAS, CORE_TOPICS, EVENTS, GALLERY, VIDEO_JOBS, VIDEO_STATUS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces"
ADMIN_TOKEN = "test-admin-token"


def _models_ready(settings: Settings) -> bool:
    from models.prepare import ModelsNotPreparedError, prepared_paths

    try:
        prepared_paths(settings.models.cache_dir)
    except ModelsNotPreparedError:
        return False
    return True


need_faces = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test media absent: {FACES}")


class Stack:
    def __init__(self, settings: Settings, client: TestClient, resources: Resources) -> None:
        self.settings = settings
        self.client = client
        self.resources = resources
        self.admin = {"Authorization": f"Token {ADMIN_TOKEN}"}

    async def json(self, method: str, path: str, status: int, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> Any:
        resp = await self.client.request(method, path, headers=self.admin if headers is None else headers, **kwargs)
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        assert resp.status == status, (resp.status, body)
        return body

    async def upload(self, path: str, status: int, files: dict[str, tuple[str, bytes]],
                     fields: dict[str, str] | None = None) -> Any:
        form = aiohttp.FormData()
        for name, (filename, data) in files.items():
            form.add_field(name, data, filename=filename, content_type="application/octet-stream")
        for name, value in (fields or {}).items():
            form.add_field(name, value)
        return await self.json("POST", path, status, data=form)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("api")
    async with EmbeddedBroker() as broker:
        settings = Settings(data_dir=data, bootstrap_servers=broker.bootstrap_servers,
                            kafka={"topic_prefix": "apitest.", "partitions": 1},
                            api={"admin_token": ADMIN_TOKEN, "admin_password": "s3cret!",
                                 "contract_checks": "fail", "video_url_allow_private": True,
                                 "url_allow_private": True},
                            models={"attributes": ["emotion", "age_gender", "mask"]})  # mask is opt-in
        await asyncio.to_thread(provision_topics, settings, CORE_TOPICS)
        async with open_resources(settings, client_id="apitest") as res:
            client = TestClient(TestServer(build_app(await api_state(res))))
            await client.start_server()
            try:
                yield Stack(settings, client, res)
            finally:
                await client.close()


async def _topic(settings: Settings, spec: Any) -> list[Any]:
    """Everything in a topic now (reads until an idle fetch)."""
    got: list[Any] = []
    stop, caught_up = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(replay_topic(settings, spec, got.append, stop, caught_up))
    await asyncio.wait_for(caught_up.wait(), 30)
    stop.set()
    await task
    return got


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


# --- auth, health, docs -------------------------------------------------------------------------------------

async def test_public_health_openapi_metrics(stack: Stack) -> None:
    health = await stack.json("GET", "/v1/health", 200, headers={})
    assert health["status"] == "ok" and health["checks"]["sql"] == "ok"
    doc = await stack.json("GET", "/v1/openapi.json", 200, headers={})
    assert "/v1/dossiers/{id}/faces" in doc["paths"] and "EventOut" in doc["components"]["schemas"]
    resp = await stack.client.get("/metrics")
    assert resp.status == 200 and "facestream_api_requests_total" in await resp.text()


async def test_interactive_docs_served_from_the_package(stack: Stack) -> None:
    import re

    resp = await stack.client.get("/v1/docs")
    page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html" and 'id="swagger-ui"' in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/v1/docs/") for a in assets)  # nothing from another host
    for asset in assets:
        got = await stack.client.get(asset)
        assert got.status == 200 and len(await got.read()) > 0, asset
    init = await (await stack.client.get("/v1/docs/docs-init.js")).text()
    assert '"/v1/openapi.json"' in init
    bundle = await stack.client.get("/v1/docs/swagger-ui-bundle.js")
    assert bundle.content_type == "text/javascript" and len(await bundle.read()) > 500_000
    for bad in ("/v1/docs/index.j2", "/v1/docs/..%2Fopenapi.json", "/v1/docs/x"):
        resp = await stack.client.get(bad)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_auth_login_roles(stack: Stack) -> None:
    await stack.json("GET", "/v1/cameras", 401, headers={})
    await stack.json("GET", "/v1/cameras", 401, headers={"Authorization": "Token nope"})
    await stack.json("POST", "/v1/auth/login", 401, headers={}, json={"username": "admin", "password": "bad"})
    login = await stack.json("POST", "/v1/auth/login", 200, headers={},
                             json={"username": "admin", "password": "s3cret!"})
    admin = {"Authorization": f"Token {login['token']}"}
    assert (await stack.json("GET", "/v1/auth/me", 200, headers=admin))["role"] == "admin"
    await stack.json("POST", "/v1/users", 201, headers=admin,
                     json={"username": "vic", "password": "viewer-pw", "role": "viewer"})
    viewer_login = await stack.json("POST", "/v1/auth/login", 200, headers={},
                                    json={"username": "vic", "password": "viewer-pw"})
    viewer = {"Authorization": f"Token {viewer_login['token']}"}
    await stack.json("GET", "/v1/watch-lists", 200, headers=viewer)
    err = await stack.json("POST", "/v1/watch-lists", 403, headers=viewer, json={"name": "x"})
    assert "viewer" in err["error"]["message"] and err["error"]["code"] == "forbidden"
    await stack.json("GET", "/v1/users", 403, headers=viewer)
    await stack.json("POST", "/v1/auth/logout", 204, headers=viewer)
    await stack.json("GET", "/v1/watch-lists", 401, headers=viewer)


# --- CRUD and bad input -------------------------------------------------------------------------------------

async def test_cameras_crud_publishes_changes(stack: Stack) -> None:
    group = await stack.json("POST", "/v1/camera-groups", 201, json={"name": "lobby"})
    made = [await stack.json("POST", "/v1/cameras", 201, json={
        "name": f"cam{i}", "url": f"rtsp://10.0.0.{i}/s", "camera_group": group["id"],
        "best_face_mode": "realtime", "filters": {"min_quality": 0.4},
        "labels": {"zone": "entrance", "index": str(i)}}) for i in range(3)]
    assert made[2]["labels"] == {"zone": "entrance", "index": "2"}
    first = await stack.json("GET", "/v1/cameras?limit=2", 200)
    assert len(first["results"]) == 2 and first["next_cursor"]
    rest = await stack.json("GET", f"/v1/cameras?limit=2&cursor={first['next_cursor']}", 200)
    assert [c["id"] for c in first["results"] + rest["results"]] == [c["id"] for c in made]
    patched = await stack.json("PATCH", f"/v1/cameras/{made[0]['id']}", 200,
                               json={"active": False, "labels": {"zone": "exit"}})
    assert patched["active"] is False and patched["filters"]["min_quality"] == 0.4
    assert (await stack.json("GET", f"/v1/cameras/{made[0]['id']}", 200))["labels"] == {"zone": "exit"}
    for bad in ({"": "x"}, {"a b": "x"}, {"k": "v" * 257}, {f"k{i}": "v" for i in range(33)}, {"k": 1}):
        err = await stack.json("PATCH", f"/v1/cameras/{made[2]['id']}", 422, json={"labels": bad})
        assert err["error"]["details"][0]["loc"][0] == "labels"
    await stack.json("DELETE", f"/v1/cameras/{made[1]['id']}", 204)
    await stack.json("GET", f"/v1/cameras/{made[1]['id']}", 404)
    await stack.json("DELETE", f"/v1/camera-groups/{group['id']}", 409)
    changes = [c for c in await _topic(stack.settings, CAMERAS) if c.camera_id in {m["id"] for m in made}]
    last = {c.camera_id: c for c in changes}
    assert last[made[0]["id"]].active is False and last[made[0]["id"]].min_quality == 0.4
    assert last[made[1]["id"]].deleted and last[made[2]["id"]].best_face_mode == "realtime"
    assert last[made[0]["id"]].labels == {"zone": "exit"}  # labels travel to the decoders
    assert last[made[2]["id"]].labels == {"zone": "entrance", "index": "2"}


async def test_validation_lists_fields_and_404s(stack: Stack) -> None:
    err = await stack.json("POST", "/v1/watch-lists", 422, json={"name": "", "color": "red", "bogus": 1})
    locs = {tuple(f["loc"]) for f in err["error"]["details"]}
    assert {("name",), ("color",), ("bogus",)} <= locs
    err = await stack.json("POST", "/v1/dossiers", 422, json={"name": "x", "watch_lists": ["nope"]})
    assert err["error"]["details"][0]["loc"] == ["watch_lists"]
    await stack.json("GET", "/v1/events?matched=maybe", 422)
    await stack.json("GET", "/v1/dossiers?cursor=zzz", 400)
    await stack.json("GET", "/v1/dossiers/unknown", 404)
    await stack.json("GET", "/v1/events/unknown", 404)
    await stack.json("GET", "/v1/videos/unknown", 404)
    await stack.json("POST", "/v1/watch-lists", 400, data=b"{not json", headers={
        **stack.admin, "Content-Type": "application/json"})


async def test_bad_images_are_refused_and_leave_nothing(stack: Stack) -> None:
    dossier = await stack.json("POST", "/v1/dossiers", 201, json={"name": "Nobody"})
    url = f"/v1/dossiers/{dossier['id']}/faces"
    await stack.upload(url, 415, {"photo": ("a.txt", b"hello, not an image")})
    await stack.upload(url, 400, {"photo": ("a.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64)})
    await stack.upload(url, 400, {"photo": ("a.jpg", b"")})
    await stack.upload(url, 413, {"photo": ("big.png", _png_header(10000, 10000))})
    await stack.upload(url, 422, {"nophoto": ("a.jpg", b"x")})
    resp = await stack.client.post(url, headers=stack.admin, json={"photo": "x"})  # JSON names faces, not files
    assert resp.status == 422
    resp = await stack.client.post(url, headers={**stack.admin, "Content-Type": "text/plain"}, data=b"x")
    assert resp.status == 415
    await stack.upload("/v1/dossiers/unknown/faces", 404, {"photo": ("a.jpg", b"x")})
    blank = np.full((200, 200, 3), 127, np.uint8)
    err = await stack.upload(url, 422, {"photo": ("blank.jpg", _jpeg(blank))})
    assert "no face" in err["error"]["message"]
    assert (await stack.json("GET", f"/v1/dossiers/{dossier['id']}", 200))["faces"] == []
    media = Path(stack.settings.data_dir) / "media" / "dossiers" / dossier["id"]
    assert not media.exists() or not any(media.iterdir())


async def test_video_upload_refusals_and_job(stack: Stack) -> None:
    await stack.upload("/v1/videos", 415, {"file": ("notes.txt", b"text")})
    await stack.upload("/v1/videos", 415, {"file": ("fake.mp4", b"not a video at all")})
    await stack.upload("/v1/videos", 422, {"other": ("a.mp4", b"x")})
    if not FACES.is_dir():
        pytest.skip(f"shared test media absent: {FACES}")
    clip = (FACES / "short_hamilton_clip.mp4").read_bytes()
    await stack.upload("/v1/videos", 422, {"file": ("clip.mp4", clip)}, {"camera_group": "nope"})
    video = await stack.upload("/v1/videos", 201, {"file": ("clip.mp4", clip)})
    assert video["status"] == "queued" and video["camera_id"] == f"video:{video['id']}"
    jobs = [j for j in await _topic(stack.settings, VIDEO_JOBS) if j.video_id == video["id"]]
    assert len(jobs) == 1 and Path(jobs[0].path).read_bytes() == clip
    assert not any((Path(stack.settings.data_dir) / "uploads").iterdir())


@contextlib.asynccontextmanager
async def _file_server(files: dict[str, bytes]) -> Any:
    """A real HTTP server on loopback serving ``files`` by name (a video host)."""
    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(body=files[name]) if name in files else web.Response(status=404)
    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_videos_by_url_with_camera_and_deleted(stack: Stack) -> None:
    if not FACES.is_dir():
        pytest.skip(f"shared test media absent: {FACES}")
    clip = (FACES / "short_hamilton_clip.mp4").read_bytes()
    await stack.upload("/v1/videos", 422, {"file": ("clip.mp4", clip)}, {"camrea": "typo"})  # not ignored
    idle = await stack.json("POST", "/v1/cameras", 201, json={"name": "door (archive)", "url": "rtsp://10.9.9.9/x",
                                                            "active": False, "labels": {"site": "archive"}})
    live = await stack.json("POST", "/v1/cameras", 201, json={"name": "door", "url": "rtsp://10.9.9.8/x"})
    for camera, code in (("nope", "unknown_reference"), (live["id"], "camera_active")):
        err = await stack.upload("/v1/videos", 422, {"file": ("clip.mp4", clip)}, {"camera": camera})
        assert err["error"]["code"] == code
    attributed = await stack.upload("/v1/videos", 201, {"file": ("clip.mp4", clip)}, {"camera": idle["id"]})
    assert attributed["camera_id"] == idle["id"] and attributed["camera_group"] == idle["camera_group"]
    async with _file_server({"clip.mp4": clip, "notes.txt": b"text"}) as base:
        fetched = await stack.json("POST", "/v1/videos/from-url", 201,
                                   json={"url": f"{base}/clip.mp4", "camera": idle["id"]})
        assert fetched["filename"] == "clip.mp4" and fetched["camera_id"] == idle["id"]
        err = await stack.json("POST", "/v1/videos/from-url", 422, json={"url": f"{base}/missing.mp4"})
        assert err["error"]["code"] == "fetch_failed"
        await stack.json("POST", "/v1/videos/from-url", 415, json={"url": f"{base}/notes.txt"})
    await stack.json("POST", "/v1/videos/from-url", 422, json={"url": "file:///etc/passwd"})
    jobs = {j.video_id: j for j in await _topic(stack.settings, VIDEO_JOBS)}
    assert jobs[fetched["id"]].camera_id == idle["id"] and Path(jobs[fetched["id"]].path).read_bytes() == clip
    assert jobs[fetched["id"]].labels == {"site": "archive"}  # an attributed video carries its camera's labels
    stored = Path(jobs[fetched["id"]].path)
    err = await stack.json("DELETE", f"/v1/videos/{fetched['id']}", 409)  # no pipeline here: still queued
    assert err["error"]["code"] == "video_processing" and "queued" in err["error"]["message"]
    assert stored.exists()
    await stack.client.server.app[STATE].videos.fail(fetched["id"], "test: stopped")
    await stack.json("DELETE", f"/v1/videos/{fetched['id']}", 204)
    await stack.json("GET", f"/v1/videos/{fetched['id']}", 404)
    await stack.json("DELETE", f"/v1/videos/{fetched['id']}", 404)
    assert not stored.exists() and not any((Path(stack.settings.data_dir) / "uploads").iterdir())


async def test_deleting_a_video_deletes_what_it_produced(stack: Stack) -> None:
    """Events (rows, vectors, thumbnails, frames no other event uses) and episodes go with the video;
    ``keep_events=true`` keeps them; events of other videos and live cameras are untouched."""
    st = stack.client.server.app[STATE]
    rng = np.random.default_rng(5)

    def made(video: str | None, i: int) -> FaceEvent:
        v = rng.standard_normal(128)
        return FaceEvent(event_id=f"del-{video}:{i}", face_id=f"del-{video}:{i}",
                         camera_id=f"video:{video}" if video else "del-live",
                         track_id=i, timestamp=1_700_000_500.0 + i, matched=False, confidence=0.1, quality=0.8,
                         bbox=(1, 2, 30, 40), descriptor=(v / np.linalg.norm(v)).tolist(), video_id=video,
                         thumbnail_key=f"thumbs/del-{video}:{i}.jpg", frame_key=f"frames/del-{video}.jpg")

    events = {v: [made(v, i) for i in range(3)] for v in ("gone", "kept", None)}
    for video in ("gone", "kept"):
        await st.videos.create(video, "x.mp4", f"videos/{video}.mp4", f"video:{video}", "default")
        st.media.put(f"videos/{video}.mp4", b"\x00video", "video/mp4")
        await st.videos.mark_done(video, 3)
    every = [e for es in events.values() for e in es]
    await st.events.upsert_many(every)
    await st.vectors.upsert_events(every)
    for e in every:
        for key in (e.thumbnail_key, e.frame_key):
            st.media.put(key, b"\xff\xd8\xff jpeg", "image/jpeg")
    builder = EpisodeBuilder(confidences)
    await st.episodes.save([c for e in every for c in builder.add(e, now=0)])
    await stack.json("GET", f"/v1/episodes/ep:{events['gone'][0].event_id}", 200)

    await stack.json("DELETE", "/v1/videos/gone", 204)
    await stack.json("GET", "/v1/videos/gone", 404)
    assert (await stack.json("GET", "/v1/events?video=gone", 200))["results"] == []
    for e in events["gone"]:
        await stack.json("GET", f"/v1/events/{e.event_id}", 404)
        await stack.json("GET", f"/v1/episodes/ep:{e.event_id}", 404)
        assert not st.media.exists(e.thumbnail_key)
    assert not st.media.exists("frames/del-gone.jpg") and not st.media.exists("videos/gone.mp4")
    assert await st.vectors.event_vectors([e.event_id for e in events["gone"]]) == {}
    for video in ("kept", None):  # other videos' and live events stay, with their images and vectors
        for e in events[video]:
            assert (await stack.json("GET", f"/v1/events/{e.event_id}", 200))["video"] == video
            await stack.json("GET", f"/v1/episodes/ep:{e.event_id}", 200)
            assert st.media.exists(e.thumbnail_key)
        assert len(await st.vectors.event_vectors([e.event_id for e in events[video]])) == 3

    await stack.json("DELETE", "/v1/videos/kept?keep_events=true", 204)
    await stack.json("GET", "/v1/videos/kept", 404)
    assert not st.media.exists("videos/kept.mp4")
    kept = (await stack.json("GET", "/v1/events?video=kept", 200))["results"]
    assert sorted(e["id"] for e in kept) == sorted(e.event_id for e in events["kept"])
    await stack.json("GET", f"/v1/episodes/ep:{events['kept'][0].event_id}", 200)
    await stack.json("DELETE", "/v1/videos/nope?keep_events=maybe", 422)


# --- faces: detect, enrol, verify, search -------------------------------------------------------------------

def _photo(name: str) -> tuple[str, bytes]:
    return name, (FACES / name).read_bytes()


@need_faces
async def test_detect_and_verify(stack: Stack) -> None:
    if not _models_ready(stack.settings):
        pytest.skip("face models not prepared (facestream models prepare)")
    detected = await stack.upload("/v1/detect", 200, {"photo": _photo("two_people.jpg")})
    assert len(detected["faces"]) == 2
    face = detected["faces"][0]
    assert len(face["landmarks"]) == 5 and 0 <= face["quality"] <= 1 and "emotion" in face["attributes"]
    assert {"age", "gender", "mask"} <= set(face["attributes"])
    obama = (await stack.upload("/v1/detect", 200, {"photo": _photo("obama.jpg")}))["faces"][0]
    assert obama["gender"] == "male" and 40 <= obama["age"] <= 65 and obama["mask"] is False
    assert obama["emotion"] == max(obama["attributes"]["emotion"], key=obama["attributes"]["emotion"].get)
    same = await stack.upload("/v1/verify", 200, {"photo1": _photo("obama.jpg"), "photo2": _photo("obama2.jpg")})
    assert same["match"] is True and same["confidence"] > 0.9
    other = await stack.upload("/v1/verify", 200, {"photo1": _photo("obama.jpg"), "photo2": _photo("biden.jpg")})
    assert other["match"] is False and other["confidence"] < 0.5
    await stack.upload("/v1/verify", 422, {"photo1": _photo("obama.jpg")})


@need_faces
async def test_enrol_publish_and_search_dossiers(stack: Stack) -> None:
    if not _models_ready(stack.settings):
        pytest.skip("face models not prepared (facestream models prepare)")
    wl = await stack.json("POST", "/v1/watch-lists", 201, json={"name": "vip", "color": "#00ff00"})
    obama = await stack.json("POST", "/v1/dossiers", 201, json={
        "name": "Barack Obama", "meta": {"note": "44th"}, "watch_lists": [wl["id"]]})
    biden = await stack.json("POST", "/v1/dossiers", 201, json={"name": "Joe Biden", "watch_lists": [wl["id"]]})
    face = await stack.upload(f"/v1/dossiers/{obama['id']}/faces", 201, {"photo": _photo("obama.jpg")})
    await stack.upload(f"/v1/dossiers/{biden['id']}/faces", 201, {"photo": _photo("biden.jpg")})
    err = await stack.upload(f"/v1/dossiers/{obama['id']}/faces", 422, {"photo": _photo("two_people.jpg")})
    assert "2 faces" in err["error"]["message"]
    photo = await stack.client.get(face["image"], headers=stack.admin)
    assert photo.status == 200 and photo.content_type == "image/jpeg"
    found = await stack.upload("/v1/search", 200, {"photo": _photo("obama2.jpg")}, {"target": "dossiers"})
    assert [r["dossier"]["id"] for r in found["results"]] == [obama["id"]]
    assert found["results"][0]["confidence"] > 0.9
    await stack.upload("/v1/search", 422, {"photo": _photo("obama2.jpg")}, {"target": "people"})
    gallery = [g.dossier for g in await _topic(stack.settings, GALLERY) if g.dossier is not None]
    last = {d.dossier_id: d for d in gallery}[obama["id"]]
    assert last.watch_list_ids == [wl["id"]] and len(last.faces) == 1 and last.name == "Barack Obama"
    before = len(await _topic(stack.settings, GALLERY))
    republished = await republish(stack.client.server.app[STATE])  # what a restart of the API does
    assert republished >= 3 and len(await _topic(stack.settings, GALLERY)) > before


@need_faces
async def test_references_instead_of_reuploads(stack: Stack) -> None:
    """detect -> detection ids; search, verify and enrolment by reference; a group photo enrols each face."""
    if not _models_ready(stack.settings):
        pytest.skip("face models not prepared (facestream models prepare)")
    detected = await stack.upload("/v1/detect", 200, {"photo": _photo("two_people.jpg")})
    assert detected["expires_at"] > time.time() + 60
    left, right = sorted(detected["faces"], key=lambda f: f["bbox"][0])  # Obama, Biden
    assert left["detection_id"] != right["detection_id"]
    group = await stack.json("POST", "/v1/watch-lists", 201, json={"name": "group photo"})
    obama = await stack.json("POST", "/v1/dossiers", 201, json={"name": "G. Obama", "watch_lists": [group["id"]]})
    biden = await stack.json("POST", "/v1/dossiers", 201, json={"name": "G. Biden", "watch_lists": [group["id"]]})
    by_ref = await stack.json("POST", f"/v1/dossiers/{obama['id']}/faces", 201,
                              json={"face": f"detection:{left['detection_id']}"})
    box = ",".join(str(v) for v in right["bbox"])
    by_box = await stack.upload(f"/v1/dossiers/{biden['id']}/faces", 201, {"photo": _photo("two_people.jpg")},
                                {"box": box})
    assert by_ref["bbox"][0] < 200 and by_box["bbox"][0] < 200  # stored as a crop of that face
    await stack.upload(f"/v1/dossiers/{biden['id']}/faces", 422, {"photo": _photo("two_people.jpg")},
                       {"box": "0,0,5,5"})
    for portrait, who in (("obama2.jpg", obama), ("biden.jpg", biden)):
        found = await stack.upload("/v1/search", 200, {"photo": _photo(portrait)},
                                   {"watch_lists": group["id"], "limit": "1"})
        assert [r["dossier"]["id"] for r in found["results"]] == [who["id"]], portrait
    # search and verify by reference, JSON only: no re-upload
    probe = (await stack.upload("/v1/detect", 200, {"photo": _photo("obama2.jpg")}))["faces"][0]
    ref = f"detection:{probe['detection_id']}"
    found = await stack.json("POST", "/v1/search", 200, json={"face": ref, "watch_lists": [group["id"]]})
    assert [r["dossier"]["id"] for r in found["results"]] == [obama["id"]]
    assert 0 < found["results"][0]["distance"] < 0.6
    # the single watch_list filter (as GET /v1/dossiers and /v1/events take it), JSON or form; with
    # watch_lists both hold
    elsewhere = await stack.json("POST", "/v1/watch-lists", 201, json={"name": "nobody here"})
    for wl, found_ids in ((group["id"], [obama["id"]]), (elsewhere["id"], [])):
        found = await stack.json("POST", "/v1/search", 200, json={"face": ref, "watch_list": wl, "limit": 1})
        assert [r["dossier"]["id"] for r in found["results"]] == found_ids, wl
        found = await stack.upload("/v1/search", 200, {"photo": _photo("obama2.jpg")},
                                   {"watch_list": wl, "limit": "1"})
        assert [r["dossier"]["id"] for r in found["results"]] == found_ids, wl
    both = {"face": ref, "watch_list": elsewhere["id"], "watch_lists": [group["id"]]}
    assert (await stack.json("POST", "/v1/search", 200, json=both))["results"] == []
    assert (await stack.json("POST", "/v1/search", 200, json={"face": ref, "watch_lists": [group["id"]],
                                                            "max_distance": 0.05}))["results"] == []
    assert (await stack.json("POST", "/v1/search", 200, json={"face": ref, "watch_lists": [group["id"]],
                                                            "threshold": 0.999}))["results"] == []
    same = await stack.json("POST", "/v1/verify", 200, json={"face1": ref, "face2": f"dossierface:{by_ref['id']}"})
    other = await stack.json("POST", "/v1/verify", 200, json={"face1": ref, "face2": f"dossierface:{by_box['id']}"})
    assert same["match"] and not other["match"] and same["distance"] < other["distance"]
    mixed = await stack.upload("/v1/verify", 200, {"photo1": _photo("obama.jpg")}, {"face2": ref})
    assert mixed["match"]
    copied = await stack.json("POST", f"/v1/dossiers/{biden['id']}/faces", 201,
                              json={"face": f"dossierface:{by_box['id']}"})
    assert copied["id"] != by_box["id"]
    # refusals name the field
    for bad, code in (("detection:nope", "unknown_reference"), ("event:nope", "unknown_reference"),
                      ("photo:x", "invalid")):
        err = await stack.json("POST", "/v1/search", 422, json={"face": bad})
        assert err["error"]["code"] == code and err["error"]["details"][0]["loc"] == ["face"], err
    err = await stack.upload("/v1/search", 422, {"photo": _photo("obama2.jpg")}, {"face": ref})
    assert "not both" in err["error"]["message"]
    await stack.json("POST", "/v1/search", 422, json={})


# --- events through the store sink, and the websocket --------------------------------------------------------

def _event(i: int, descriptor: list[float], matched: bool, dossier: str | None = None) -> FaceEvent:
    return FaceEvent(event_id=f"cam9:{i}:0", face_id=f"cam9:{i}:0", camera_id="cam9", track_id=i,
                     timestamp=1_700_000_000.0 + i, matched=matched, dossier_id=dossier,
                     confidence=0.9 if matched else 0.1, faces_used=i + 1,
                     quality=0.8, bbox=(1, 2, 30, 40), descriptor=descriptor, thumbnail_key=f"thumbs/cam9:{i}:0.jpg")


def _incoming(spec: Any, message: Any, offset: int) -> Incoming:
    return Incoming(topic=spec, key="cam9", message=message, partition=0, offset=offset, timestamp_ms=0)


async def _no_retention() -> None:
    return None


async def test_store_sink_events_api_and_search(stack: Stack) -> None:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((3, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    res = stack.resources
    engine, media = await res.sql(), await res.media()
    videos = VideoRepository(engine)
    sink = StoreSink(events=EventRepository(engine, media.url_path), vectors=await res.vectors(), videos=videos,
                     retention=_no_retention)
    await sink.start()
    try:
        events = [_event(i, vecs[i].tolist(), i == 0, "d-x" if i == 0 else None) for i in range(3)]
        batch = [_incoming(EVENTS, e, i) for i, e in enumerate(events)]
        await sink.handle(batch)
        await sink.handle(batch)  # redelivery: idempotent
        media.put("thumbs/cam9:0:0.jpg", b"\xff\xd8\xff thumb", "image/jpeg")
        video = {"video_id": "v-sink", "camera_id": "video:v-sink"}
        await videos.create("v-sink", "x.mp4", "videos/v-sink.mp4", "video:v-sink", "default")
        await sink.handle([_incoming(VIDEO_STATUS, VideoProgress(**video, status="processing", frames_done=3,
                                                                 frames_total=6), 9)])
        assert (await stack.json("GET", "/v1/videos/v-sink", 200))["progress"] == 0.5
        await sink.handle([_incoming(EVENTS, StreamEnd(camera_id="video:v-sink", video_id="v-sink",
                                                       frames_total=6), 10)])
        assert (await stack.json("GET", "/v1/videos/v-sink", 200))["status"] == "done"
    finally:
        await sink.stop()
    listed = await stack.json("GET", "/v1/events?camera=cam9&limit=2", 200)
    assert [e["id"] for e in listed["results"]] == ["cam9:2:0", "cam9:1:0"] and listed["next_cursor"]
    assert [e["faces_used"] for e in listed["results"]] == [3, 2]  # how many track faces decided each
    matched = await stack.json("GET", "/v1/events?camera=cam9&matched=true", 200)
    assert [e["id"] for e in matched["results"]] == ["cam9:0:0"]
    one = await stack.json("GET", "/v1/events/cam9:0:0", 200)
    assert one["thumbnail"].startswith("/v1/media/thumbs/cam9:0:0.jpg?expires=") and one["frame"] is None
    thumb = await stack.client.get(one["thumbnail"])  # a signed URL: no token needed (none in the query string)
    assert thumb.status == 200
    acked = await stack.json("POST", "/v1/events/cam9:0:0/acknowledge", 200)
    assert acked["acknowledged"] and acked["acknowledged_by"] == "admin-token"
    unacked = await stack.json("GET", "/v1/events?camera=cam9&acknowledged=false", 200)
    assert len(unacked["results"]) == 2
    if _models_ready(stack.settings):  # search past events by one of them: it comes first, at distance 0
        found = await stack.json("POST", "/v1/search", 200, json={"face": "event:cam9:1:0", "target": "events",
                                                                "camera": "cam9", "threshold": 0})
        assert found["results"][0]["event"]["id"] == "cam9:1:0" and found["results"][0]["distance"] < 1e-3


async def test_event_filters_ordering_and_bulk_acknowledge(stack: Stack) -> None:
    st = stack.client.server.app[STATE]
    events = [FaceEvent(event_id=f"cam7:{i}:0", face_id=f"cam7:{i}:0", camera_id="cam7", track_id=i,
                        timestamp=1_700_000_100.0 + i, matched=False, confidence=c, quality=0.8, bbox=(1, 2, 30, 40),
                        descriptor=[1.0] + [0.0] * 127, video_id="v7" if i < 3 else None)
              for i, c in enumerate((0.3, 0.9, 0.5, 0.7))]
    await st.events.upsert_many(events)
    await st.events.set_episode(["cam7:1:0", "cam7:3:0"], "ep:cam7:1:0")

    async def ids(query: str) -> list[str]:
        return [e["id"] for e in (await stack.json("GET", f"/v1/events?camera=cam7&{query}", 200))["results"]]

    assert await ids("ordering=timestamp") == ["cam7:0:0", "cam7:1:0", "cam7:2:0", "cam7:3:0"]
    assert await ids("ordering=-confidence") == ["cam7:1:0", "cam7:3:0", "cam7:2:0", "cam7:0:0"]
    first = await stack.json("GET", "/v1/events?camera=cam7&ordering=confidence&limit=2", 200)
    rest = await stack.json("GET", f"/v1/events?camera=cam7&ordering=confidence&limit=2&cursor={first['next_cursor']}",
                            200)
    assert [e["id"] for e in first["results"] + rest["results"]] == ["cam7:0:0", "cam7:2:0", "cam7:3:0", "cam7:1:0"]
    assert await ids("video=v7&ordering=timestamp") == ["cam7:0:0", "cam7:1:0", "cam7:2:0"]
    assert await ids("episode=ep:cam7:1:0") == ["cam7:3:0", "cam7:1:0"]
    await stack.json("GET", "/v1/events?ordering=name", 422)
    await stack.json("POST", "/v1/events/acknowledge", 422, json={})
    await stack.json("POST", "/v1/events/acknowledge", 422, json={"filters": {}})
    done = await stack.json("POST", "/v1/events/acknowledge", 200, json={"ids": ["cam7:0:0", "nope"]})
    assert done == {"acknowledged": 1}
    done = await stack.json("POST", "/v1/events/acknowledge", 200, json={"filters": {"camera": "cam7", "video": "v7"}})
    assert done == {"acknowledged": 2}  # cam7:0:0 was already acknowledged
    assert await ids("acknowledged=false") == ["cam7:3:0"]


async def test_websocket_forwards_new_events(stack: Stack) -> None:
    async with stack.client.ws_connect("/v1/ws/events", params={"token": ADMIN_TOKEN}) as ws:
        producer = AsyncProducer(stack.settings)
        try:
            await asyncio.sleep(1.0)
            event = _event(42, [1.0] + [0.0] * 127, False)
            await producer.send(EVENTS, "cam9", event)
            msg = await asyncio.wait_for(ws.receive_json(), 20)
        finally:
            await producer.close()
    assert msg["event_id"] == "cam9:42:0" and "descriptor" not in msg
    resp = await stack.client.get("/v1/ws/events")
    assert resp.status == 401
