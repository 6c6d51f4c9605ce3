"""Issue 4's proof: an integrator drives `facestream up` over HTTP only.

Logs in, creates a watch list and dossiers from the shared portraits, uploads the Hamilton clip, waits for
it to be processed, finds events matched to Lin-Manuel Miranda with thumbnails that load, finds them again
by searching his portrait over events, checks verify, and checks every bad-input status. One `up` process
for the module.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ROOT = Path(__file__).resolve().parents[2]
FACES = ROOT.parent / "shared" / "data" / "faces"
ADMIN_TOKEN = "e2e-admin-token"
PASSWORD = "e2e-pass"
VIDEO_TIMEOUT_S = 420

if not FACES.is_dir():
    pytest.skip(f"shared test media absent: {FACES}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session
        self.headers: dict[str, str] = {}

    async def call(self, method: str, path: str, status: int, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> Any:
        async with self.session.request(method, self.base + path, headers=self.headers if headers is None else headers,
                                        **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.read()
            assert resp.status == status, (method, path, resp.status, body)
            return body

    async def upload(self, path: str, status: int, files: dict[str, str | tuple[str, bytes]],
                     fields: dict[str, str] | None = None) -> Any:
        form = aiohttp.FormData()
        for name, source in files.items():
            filename, data = (source, (FACES / source).read_bytes()) if isinstance(source, str) else source
            form.add_field(name, data, filename=filename, content_type="application/octet-stream")
        for name, value in (fields or {}).items():
            form.add_field(name, value)
        return await self.call("POST", path, status, data=form)


def _start_up(data: Path, port: int) -> tuple[subprocess.Popen[bytes], Any]:
    """`facestream up` in its own session, logging to data/up.log."""
    env = {**os.environ, "FACESTREAM_ADMIN_TOKEN": ADMIN_TOKEN, "FACESTREAM_API_ADMIN_PASSWORD": PASSWORD}
    log = open(data / "up.log", "wb")  # noqa: SIM115 - closed by the fixture
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "up", "--data-dir", str(data), "--api-port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    proc, log = _start_up(data, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            client = Api(base, session)
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, (data / "up.log").read_text()[-3000:]
                try:
                    async with session.get(base + "/v1/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "facestream up did not answer /v1/health in 120 s"
                await asyncio.sleep(0.5)
            yield client
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_integrator_flow(api: Api) -> None:
    login = await api.call("POST", "/v1/auth/login", 200, headers={}, json={"username": "admin", "password": PASSWORD})
    api.headers = {"Authorization": f"Token {login['token']}"}
    wl = await api.call("POST", "/v1/watch-lists", 201, json={"name": "Hamilton cast", "color": "#ff8800"})
    dossiers = {}
    for name, photo in (("Lin-Manuel Miranda", "lin-manuel-miranda.png"), ("Alex Lacamoire", "alex-lacamoire.png"),
                        ("Barack Obama", "obama.jpg")):
        d = await api.call("POST", "/v1/dossiers", 201, json={"name": name, "watch_lists": [wl["id"]]})
        await api.upload(f"/v1/dossiers/{d['id']}/faces", 201, {"photo": photo})
        dossiers[name] = d["id"]
    lin = dossiers["Lin-Manuel Miranda"]

    started = time.monotonic()
    video = await api.upload("/v1/videos", 201, {"file": "short_hamilton_clip.mp4"})
    while True:
        status = await api.call("GET", f"/v1/videos/{video['id']}", 200)
        assert status["status"] != "failed", status
        if status["status"] == "done":
            break
        assert time.monotonic() - started < VIDEO_TIMEOUT_S, status
        assert (await api.call("GET", "/v1/health", 200, headers={}))["status"] == "ok"  # up while it runs
        await asyncio.sleep(1.0)
    print(f"\nvideo processed in {time.monotonic() - started:.1f} s ({status['frames_total']} frames)")

    events = await api.call("GET", f"/v1/events?dossier={lin}&camera={video['camera_id']}", 200)
    assert events["results"], "no event matched to Lin-Manuel Miranda"
    for event in events["results"]:
        assert event["matched"] and event["watch_lists"] == [wl["id"]] and event["confidence"] >= 0.4
        async with api.session.get(api.base + event["thumbnail"], headers=api.headers) as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg" and len(await resp.read()) > 100
    one = await api.call("GET", f"/v1/events/{events['results'][0]['id']}", 200)
    assert one["frame"] and one["thumbnail"]

    for _ in range(30):  # the episodes stage runs beside the store sink: give it a moment
        episodes = (await api.call("GET", f"/v1/episodes?dossier={lin}&closed=true", 200))["results"]
        if episodes:
            break
        await asyncio.sleep(1.0)
    assert episodes, "no closed episode for Lin-Manuel Miranda"
    episode = await api.call("GET", f"/v1/episodes/{episodes[0]['id']}", 200)
    assert set(episode["event_ids"]) & {e["id"] for e in events["results"]}
    linked = await api.call("GET", f"/v1/events/{episode['event_ids'][0]}", 200)
    assert linked["episode"] == episode["id"]

    found = await api.upload("/v1/search", 200, {"photo": "lin-manuel-miranda.png"},
                             {"target": "events", "limit": "50", "camera": video["camera_id"]})
    found_ids = {r["event"]["id"] for r in found["results"]}
    assert found_ids & {e["id"] for e in events["results"]}
    assert all(r["confidence"] >= 0.4 for r in found["results"])  # the default match threshold

    same = await api.upload("/v1/verify", 200, {"photo1": "obama.jpg", "photo2": "obama2.jpg"})
    other = await api.upload("/v1/verify", 200, {"photo1": "obama.jpg", "photo2": "biden.jpg"})
    assert same["match"] and not other["match"]


async def test_one_sql_engine_and_one_producer_for_every_role(api: Api) -> None:
    """`up` runs all ten roles (and the API) on one of each shared resource (ops/root.py), counted where SQL
    engines and producers are created; after the integrator flow every role has used them, none restarted."""
    body = await api.call("GET", "/metrics", 200, headers={})
    text = body.decode() if isinstance(body, bytes) else str(body)
    opened = {kind: float(n) for kind, n in
              re.findall(r'^facestream_resources_opened_total\{kind="(\w+)"\} (\S+)$', text, re.MULTILINE)}
    assert opened == {"sql": 1.0, "producer": 1.0, "vectors": 1.0, "media": 1.0, "face_models": 1.0,
                      "source_io": 1.0}, opened
    assert not re.search(r"^facestream_role_restarts_total\{", text, re.MULTILINE), "a role crashed under up"


async def test_bad_inputs(api: Api) -> None:
    admin = {"Authorization": f"Token {ADMIN_TOKEN}"}
    await api.call("GET", "/v1/events", 401, headers={})
    await api.call("GET", "/v1/events", 401, headers={"Authorization": "Token wrong"})
    await api.call("POST", "/v1/users", 201, headers=admin,
                   json={"username": "watcher", "password": "watcher-pw", "role": "viewer"})
    viewer = await api.call("POST", "/v1/auth/login", 200, headers={},
                            json={"username": "watcher", "password": "watcher-pw"})
    await api.call("POST", "/v1/watch-lists", 403, headers={"Authorization": f"Token {viewer['token']}"},
                   json={"name": "x"})
    api.headers = admin
    await api.call("GET", "/v1/dossiers/no-such-id", 404)
    err = await api.call("POST", "/v1/watch-lists", 422, json={"name": "", "threshold": 2})
    assert {tuple(f["loc"]) for f in err["error"]["details"]} == {("name",), ("threshold",)}
    d = await api.call("POST", "/v1/dossiers", 201, json={"name": "Refusals"})
    url = f"/v1/dossiers/{d['id']}/faces"
    await api.upload(url, 415, {"photo": ("notes.txt", b"plain text")})
    await api.upload(url, 400, {"photo": ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 100)})
    big = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    await api.upload(url, 413, {"photo": ("huge.png", big)})
    err = await api.upload(url, 422, {"photo": "two_people.jpg"})
    assert "faces found" in err["error"]["message"]
    await api.upload("/v1/videos", 415, {"file": ("clip.txt", b"text")})
    assert (await api.call("GET", f"/v1/dossiers/{d['id']}", 200))["faces"] == []


async def test_a_second_up_on_a_taken_port_exits_with_one_line(api: Api, tmp_path: Path) -> None:
    port = int(api.base.rsplit(":", 1)[1])
    proc, log = _start_up(tmp_path, port)
    try:
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert rc == 1, output[-3000:]
    assert f"cannot listen on 127.0.0.1:{port}" in output and "restarting" not in output, output[-3000:]
