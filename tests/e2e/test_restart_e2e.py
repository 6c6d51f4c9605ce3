"""Nothing lost on a restart (issue 16, points 1 and 2), against real `facestream up` processes on one data dir.

A short clip (the audience shot of the Hamilton clip, 64 frames) is processed undisturbed once: the
reference. Then the box is interrupted at three moments, each with a video in flight: SIGKILL of the process
group right after an upload (queued), SIGKILL while the video is processing, and SIGTERM while processing.
After the last restart every interrupted video is done with exactly the reference's events (ids, times from
the upload, matches) and episodes (ids, events, closed at the stream end), and a video whose file vanished
while the box was down is failed with the reason, its episodes closed. The embedded broker dies with its
parent every time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import pytest

from tests.processes import wait_dead

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT.parent / "shared" / "data" / "faces" / "short_hamilton_clip.mp4"
TOKEN = "restart-admin-token"
AUTH = {"Authorization": f"Token {TOKEN}"}
WAIT_S = 120

if not CLIP.is_file():
    pytest.skip(f"shared test media absent: {CLIP}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _audience_shot(out: Path) -> Path:
    """Frames 211.. of the clip (Obama in the audience) as a small mp4."""
    cap = cv2.VideoCapture(str(CLIP))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), (640, 360))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index >= 211:
            writer.write(frame)
        index += 1
    writer.release()
    cap.release()
    return out




class Box:
    """One data dir, `facestream up` started and interrupted on it."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "FACESTREAM_ADMIN_TOKEN": TOKEN, "FACESTREAM_API_ADMIN_PASSWORD": "restart-pw"}
        self.starts += 1
        with open(self.data / f"up{self.starts}.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "ops.cli", "up", "--data-dir", str(self.data),
                                     "--api-port", str(self.port)],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.proc = self._spawn()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data / f"up{self.starts}.log").read_text()[-3000:]
            try:
                async with session.get(self.base + "/v1/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("facestream up did not answer in time")

    def broker_pid(self) -> int:
        return int((self.data / "broker.pid").read_text())

    async def interrupt(self, how: signal.Signals) -> None:
        assert self.proc is not None
        broker = self.broker_pid()
        if how == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole process group, as an operator's kill would
        else:
            self.proc.send_signal(how)
        await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 60)
        gone = await asyncio.get_running_loop().run_in_executor(None, wait_dead, broker)
        assert gone, "the embedded broker outlived its parent"
        self.proc = None


async def _call(session: aiohttp.ClientSession, box: Box, method: str, path: str, **kwargs: Any) -> Any:
    async with session.request(method, box.base + path, headers=AUTH, **kwargs) as resp:
        body = await resp.json()
        assert resp.status < 300, (method, path, resp.status, body)
        return body


async def _upload(session: aiohttp.ClientSession, box: Box, clip: Path) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", clip.read_bytes(), filename="audience.mp4", content_type="video/mp4")
    return await _call(session, box, "POST", "/v1/videos", data=form)


async def _until(session: aiohttp.ClientSession, box: Box, video_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        video = await _call(session, box, "GET", f"/v1/videos/{video_id}")
        if video["status"] in statuses:
            return video
        await asyncio.sleep(0.1)
    raise AssertionError(f"video {video_id} never reached {statuses}: {video}")


async def _outcome(session: aiohttp.ClientSession, box: Box, video: dict[str, Any]) -> dict[str, Any]:
    """_outcome_now once every event is in an episode and every episode closed (the episodes stage may trail
    the store sink)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        now = await _outcome_now(session, box, video)
        settled = all(e[3] for e in now["events"]) and all(closed for _, closed, *_ in now["episodes"])
        if (now["events"] and settled) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


async def _outcome_now(session: aiohttp.ClientSession, box: Box, video: dict[str, Any]) -> dict[str, Any]:
    """The video's events and episodes with its camera id taken out of their ids, times from its start."""
    camera = video["camera_id"]
    events = (await _call(session, box, "GET", "/v1/events", params={"camera": camera, "limit": "500"}))["results"]
    episodes = (await _call(session, box, "GET", "/v1/episodes",
                            params={"camera": camera, "limit": "500"}))["results"]
    detail = [await _call(session, box, "GET", f"/v1/episodes/{e['id']}") for e in episodes]
    return {
        "events": sorted((e["id"].replace(camera, "CAM"), round(e["offset_s"], 3), e["dossier"],
                          (e["episode"] or "").replace(camera, "CAM")) for e in events),
        "episodes": sorted((d["id"].replace(camera, "CAM"), d["closed"], d["close_reason"],
                            d["event_count"], tuple(i.replace(camera, "CAM") for i in d["event_ids"]))
                           for d in detail),
    }


async def test_interrupted_videos_resume_to_the_undisturbed_result(tmp_path: Path) -> None:
    clip = _audience_shot(tmp_path / "audience.mp4")
    data = tmp_path / "data"
    data.mkdir()
    box = Box(data)
    async with aiohttp.ClientSession() as session:
        await box.start(session)
        queued = await _upload(session, box, clip)  # moment 1: SIGKILL right after the upload
        await box.interrupt(signal.SIGKILL)

        await box.start(session)
        processing = await _upload(session, box, clip)  # moment 2: SIGKILL while it is being processed
        await _until(session, box, processing["id"], {"processing", "done"})
        vanished = await _upload(session, box, clip)  # its file will be gone at the next start
        await box.interrupt(signal.SIGKILL)
        (data / "media" / "videos").joinpath(f"{vanished['id']}.mp4").unlink()

        await box.start(session)
        stopped = await _upload(session, box, clip)  # moment 3: SIGTERM while it is being processed
        await _until(session, box, stopped["id"], {"processing", "done"})
        await box.interrupt(signal.SIGTERM)

        await box.start(session)
        try:
            # the undisturbed run, alongside the resumed ones (each video is its own tracking and dedup scope)
            reference = await _upload(session, box, clip)
            await _until(session, box, reference["id"], {"done"})
            expected = await _outcome(session, box, reference)
            assert expected["events"] and expected["episodes"]
            assert all(closed and reason == "stream_end" for _, closed, reason, *_ in expected["episodes"])
            for video in (queued, processing, stopped):
                await _until(session, box, video["id"], {"done", "failed"})
                assert await _outcome(session, box, video) == expected, video["id"]
            failed = await _until(session, box, vanished["id"], {"done", "failed"})
            assert failed["status"] == "failed" and "gone" in failed["error"], failed
            left = await _call(session, box, "GET", "/v1/episodes",
                               params={"camera": vanished["camera_id"], "closed": "false"})
            assert left["results"] == []
        finally:
            await box.interrupt(signal.SIGTERM)
