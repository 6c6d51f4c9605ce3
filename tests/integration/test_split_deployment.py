"""The distributed deployment end to end (issue 13): every role its own ``facestream run ROLE`` process, on the
PostgreSQL, Milvus standalone and S3 (moto) servers and the embedded broker, each process with a data dir of its
own (nothing reaches another process through the disk).

api, decoder, two detectors, extractor, matcher, store, episodes and webhooks run as nine processes. The
integrator's flow goes through the API only: enrol the watch list, register a webhook (a real HTTP receiver on
loopback), upload the Hamilton clip. When the detector that owns the clip's frames partition has posted its
first face it is SIGKILLed; the other detector takes the partition over. The clip must then end with exactly the
events of the undisturbed single-process run (``clip_reference``: same track and sequence ids, same identities,
no duplicate, none lost), thumbnails that load from S3, a search that finds Lin-Manuel Miranda over the events
(Milvus server), closed episodes holding every event, and the matched events delivered to the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ops.broker import EmbeddedBroker
from ops.harness import DetectorWatch, VideoResult
from pipeline.settings import Settings
from tests.integration.conftest import WATCH_LIST, settings_for
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "split-admin-token"
AUTH = {"Authorization": f"Token {TOKEN}"}
ROLES = ("api", "decoder", "detector", "detector", "extractor", "matcher", "store", "episodes", "webhooks")
WAIT_S = 180


class Deployment:
    """The nine role processes, each started as an operator would (`facestream run ROLE`, environment only)."""

    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.env, self.root = env, root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started = time.monotonic()

    def start(self, role: str) -> str:
        name = role if role not in self.procs else f"{role}-{sum(n.startswith(role) for n in self.procs) + 1}"
        data = self.root / name
        data.mkdir()
        with open(data / "role.log", "wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", "run", role], cwd=ROOT,
                env={**self.env, "FACESTREAM_DATA_DIR": str(data)}, stdout=log, stderr=subprocess.STDOUT)
        return name

    def by_pid(self, pid: int) -> str:
        return next(name for name, proc in self.procs.items() if proc.pid == pid)

    def check_alive(self, *but: str) -> None:
        for name, proc in self.procs.items():
            assert name in but or proc.poll() is None, f"{name} exited with {proc.returncode}: {self.log(name)}"

    def log(self, name: str) -> str:
        return (self.root / name / "role.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on loopback: its URL and every item it was delivered."""
    items: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        items.extend(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", items
    finally:
        await runner.cleanup()


async def until(what: str, check: Any, deployment: Deployment, *but: str) -> Any:
    """Poll the async ``check`` until it returns something truthy; the processes must stay up meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        deployment.check_alive(*but)
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {WAIT_S} s")


def env_for(settings: Settings, servers: dict[str, str], api_port: int) -> dict[str, str]:
    k = settings.kafka
    return {
        **os.environ,
        "FACESTREAM_BOOTSTRAP_SERVERS": str(settings.bootstrap_servers),
        "FACESTREAM_KAFKA_TOPIC_PREFIX": k.topic_prefix, "FACESTREAM_KAFKA_PARTITIONS": str(k.partitions),
        "FACESTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000", "FACESTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "FACESTREAM_STORE_SQL_URL": servers["sql"], "FACESTREAM_STORE_MILVUS_URI": servers["milvus"],
        "FACESTREAM_STORE_MEDIA_S3_URL": servers["s3_url"], "FACESTREAM_STORE_MEDIA_S3_ENDPOINT": servers["s3"],
        "FACESTREAM_ADMIN_TOKEN": TOKEN, "FACESTREAM_API_PORT": str(api_port),
        "FACESTREAM_API_URL_ALLOW_PRIVATE": "true",  # the webhook receiver is on loopback
        "FACESTREAM_WEBHOOKS_REFRESH_S": "0.5", "FACESTREAM_WEBHOOKS_BATCH_LINGER_S": "0.2",
    }


def test_split_deployment_survives_a_detector_kill(
    broker: EmbeddedBroker, shared_faces: Path, clip_reference: VideoResult, postgres_server: Any,
    milvus_server: Any, s3_server: Any, tmp_path: Path,
) -> None:
    expected = {(*_track_seq(e.event_id), e.dossier_name if e.matched else None) for e in clip_reference.events}
    assert len(expected) == len(clip_reference.events) and expected
    settings = settings_for(broker, tmp_path)
    servers = {"sql": postgres_server.new_database("split"), "milvus": milvus_server.new_database("split"),
               "s3_url": f"s3://{s3_server.new_bucket('split')}/media", "s3": s3_server.endpoint}
    api_port = free_port()
    deployment = Deployment(env_for(settings, servers, api_port), tmp_path)
    for role in ROLES:
        deployment.start(role)
    try:
        outcome = asyncio.run(_scenario(deployment, settings, shared_faces, f"http://127.0.0.1:{api_port}"))
    finally:
        deployment.stop()

    assert outcome["victim_faces_at_kill"] < len(expected), "the detector was killed after the clip, not mid-video"
    assert outcome["taken_over"], "the surviving detector never reported the clip's partition"
    events = outcome["events"]
    got = [(*_track_seq(e["id"]), e["dossier_name"] if e["matched"] else None) for e in events]
    assert len(got) == len(set(got)), "a duplicate event"
    assert set(got) - expected == set(), "events the single-process run did not have (a replay under a new id?)"
    assert expected - set(got) == set(), "events lost in the failover"


def _track_seq(event_id: str) -> tuple[str, str]:
    """An event id without its camera and session (each run has its own): the track id and sequence."""
    _, track, seq = event_id.rsplit(":", 2)
    return track, seq


class Api:
    """The integrator's HTTP client (admin token)."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(method, path, **kwargs) as resp:
            body = await resp.json()
            assert resp.status < 300, (method, path, resp.status, body)
            return body

    async def upload(self, path: str, field: str, file: Path, **fields: str) -> Any:
        form = aiohttp.FormData()
        form.add_field(field, file.read_bytes(), filename=file.name, content_type="application/octet-stream")
        for name, value in fields.items():
            form.add_field(name, value)
        return await self.call("POST", path, data=form)

    async def image(self, path: str) -> bytes:
        async with self.http.get(path) as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg", (path, resp.status)
            return await resp.read()

    async def healthy(self) -> bool:
        try:
            async with self.http.get("/v1/health") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False


async def _scenario(deployment: Deployment, settings: Settings, faces: Path, base: str) -> dict[str, Any]:
    watch, stop = DetectorWatch(settings), asyncio.Event()
    async with aiohttp.ClientSession(base_url=base, headers=AUTH) as http, receiver() as (hook_url, delivered):
        api = Api(http)
        await until("the API answers", api.healthy, deployment)
        watcher = asyncio.create_task(watch.run(stop))
        try:
            return await _flow(deployment, watch, api, faces, hook_url, delivered)
        finally:
            stop.set()
            await watcher


async def _flow(deployment: Deployment, watch: DetectorWatch, api: Api, faces: Path, hook_url: str,
                delivered: list[dict[str, Any]]) -> dict[str, Any]:
    # the integrator's set-up: a watch list, one dossier per portrait, a webhook on matched events and episodes
    wl = await api.call("POST", "/v1/watch-lists", json={"name": "Hamilton"})
    for name, photo in WATCH_LIST.items():
        dossier = await api.call("POST", "/v1/dossiers", json={"name": name, "watch_lists": [wl["id"]]})
        await api.upload(f"/v1/dossiers/{dossier['id']}/faces", "photo", faces / photo)
    await api.call("POST", "/v1/webhooks", json={"url": hook_url, "topics": ["events", "episode_close"],
                                                 "filters": {"matched": "matched"}})

    async def both_detectors_own_a_partition() -> bool:
        owned = watch.detectors()
        return len(owned) == 2 and all(len(p) == 1 for p in owned.values())

    await until("two detectors sharing the frames partitions", both_detectors_own_a_partition, deployment)

    print(f"\nready {time.monotonic() - deployment.started:.1f} s after the start")
    video = await api.upload("/v1/videos", "file", faces / "short_hamilton_clip.mp4")
    camera = video["camera_id"]

    async def first_face_posted() -> bool:
        return bool(watch.faces.get(camera)) and camera in watch.frames_partition

    await until("the clip's first face", first_face_posted, deployment)
    partition, victim_pid = watch.frames_partition[camera], watch.owner(camera)
    assert victim_pid is not None, watch.members
    victim = deployment.by_pid(victim_pid)
    faces_at_kill = len(set(watch.faces[camera]))
    deployment.procs[victim].send_signal(signal.SIGKILL)
    print(f"\n{victim} killed {time.monotonic() - deployment.started:.1f} s after the start, "
          f"{faces_at_kill} faces of the clip posted")
    assert deployment.procs[victim].wait(10) == -signal.SIGKILL

    async def taken_over() -> bool:
        return any(partition in parts for pid, parts in watch.detectors().items() if pid != victim_pid)

    async def done() -> bool:
        status = await api.call("GET", f"/v1/videos/{video['id']}")
        assert status["status"] != "failed", status
        return bool(status["status"] == "done")

    await until("the survivor takes the clip's partition over", taken_over, deployment, victim)
    await until("the clip processed", done, deployment, victim)
    print(f"clip done {time.monotonic() - deployment.started:.1f} s after the start")

    async def settled() -> list[dict[str, Any]] | None:
        """The clip's events once every one is in a closed episode (the episodes stage trails the store)."""
        events = (await api.call("GET", "/v1/events", params={"camera": camera, "limit": "500"}))["results"]
        episodes = (await api.call("GET", "/v1/episodes", params={"camera": camera, "limit": "500"}))["results"]
        closed = events and all(e["episode"] for e in events) and episodes and all(e["closed"] for e in episodes)
        return events if closed else None

    events = await until("every event in a closed episode", settled, deployment, victim)
    matched = [e for e in events if e["matched"]]
    assert {"Lin Manuel Miranda", "Alex Lacamoire", "Obama"} <= {e["dossier_name"] for e in matched}
    for event in matched:  # thumbnails and frames are on S3, served through the API
        assert len(await api.image(event["thumbnail"])) > 100 and len(await api.image(event["frame"])) > 100

    lin = {e["id"] for e in matched if e["dossier_name"] == "Lin Manuel Miranda"}
    found = await api.upload("/v1/search", "photo", faces / WATCH_LIST["Lin Manuel Miranda"],
                             target="events", limit="50", camera=camera)
    assert {r["event"]["id"] for r in found["results"]} & lin, "searching his portrait over events found none"

    def delivered_events() -> set[str]:
        return {i["id"] for i in delivered if i["type"] == "event"}

    async def delivered_both() -> bool:  # the webhooks stage deduplicates events: not every one is sent
        return bool(delivered_events()) and any(i["type"] == "episode_close" for i in delivered)

    await until("a matched event and an episode close delivered to the webhook", delivered_both, deployment,
                victim)
    assert delivered_events() <= {e["id"] for e in matched}, "the webhook got an event the store does not have"
    return {"events": events, "victim_faces_at_kill": faces_at_kill, "taken_over": True}
