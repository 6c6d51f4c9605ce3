"""POST /v1/video-liveness on the real application and models: genuine clip frames are alive, a synthesised
screen replay of the same frames is not; every limit and error code (400, 406, 413, 415)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.api.app import build_app
from models.synthetic import replay
from ops.root import api_state, open_resources
from pipeline.settings import Settings
from tests.conftest import FACES_DIR, model_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"test media not found at {FACES_DIR}")]
TOKEN = "liveness-admin"
AUTH = {"Authorization": f"Token {TOKEN}"}


def _clip_frames(start: int = 90, stop: int = 210, step: int = 4) -> list[np.ndarray]:
    """Frames of the Hamilton clip's second shot on stage (Lin-Manuel Miranda, frontal)."""
    capture = cv2.VideoCapture(str(FACES_DIR / "short_hamilton_clip.mp4"))
    frames, n = [], 0
    while True:
        ok, frame = capture.read()
        if not ok or n >= stop:
            break
        if n >= start and (n - start) % step == 0:
            frames.append(frame)
        n += 1
    capture.release()
    return frames


def _write(path: Path, frames: list[np.ndarray], fps: float = 8.0) -> bytes:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path.read_bytes()


class Clips:
    def __init__(self, tmp: Path) -> None:
        genuine = _clip_frames()
        self.genuine = _write(tmp / "genuine.avi", genuine)
        self.replay = _write(tmp / "replay.avi", [replay(f, "screen", seed=i) for i, f in enumerate(genuine)])
        self.fast = _write(tmp / "fast.avi", genuine, fps=90.0)
        self.short = _write(tmp / "short.avi", genuine[:5])
        blank = np.full_like(genuine[0], 128)
        self.no_face = _write(tmp / "noface.avi", [blank] * 12)
        two = cv2.imread(str(FACES_DIR / "two_people.jpg"))
        self.two_people = _write(tmp / "two.avi", [two] * 12)


class Api:
    def __init__(self, client: TestClient, settings: Settings, clips: Clips) -> None:
        self.client, self.settings, self.clips = client, settings, clips

    async def post(self, body: bytes, status: int, params: dict[str, str] | None = None,
                   content_type: str = "video/x-msvideo") -> Any:
        resp = await self.client.post("/v1/video-liveness", data=body, params=params or {},
                                      headers={**AUTH, "Content-Type": content_type})
        payload = await resp.json()
        assert resp.status == status, (resp.status, payload)
        return payload


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("liveness")
    settings = Settings(data_dir=tmp, models=model_settings().model_dump(),
                        api={"admin_token": TOKEN, "contract_checks": "fail"})
    async with open_resources(settings) as res:
        client = TestClient(TestServer(build_app(await api_state(res))))
        await client.start_server()
        try:
            yield Api(client, settings, Clips(tmp))
        finally:
            await client.close()


async def test_genuine_clip_is_alive_with_its_best_face(api: Api) -> None:
    body = await api.post(api.clips.genuine, 200, {"return_detection": "true", "return_normalized": "true",
                                                   "return_photo": "true"})
    assert body["alive"] is True and body["average_liveness"] >= api.settings.models.liveness_threshold
    assert body["frames_scored"] >= api.settings.video_liveness.min_frames
    face = body["best_face"]
    assert set(face["bbox"]) == {"left", "top", "right", "bottom"} and face["bbox"]["right"] > face["bbox"]["left"]
    assert 0 <= face["liveness"] <= 1 and 0 < face["quality"] <= 1
    assert face["frame_ts"] == pytest.approx(face["frame_no"] / 8.0, abs=1e-3)
    chip = cv2.imdecode(np.frombuffer(base64.b64decode(face["normalized"]), np.uint8), cv2.IMREAD_COLOR)
    photo = cv2.imdecode(np.frombuffer(base64.b64decode(face["photo"]), np.uint8), cv2.IMREAD_COLOR)
    assert chip.shape == (150, 150, 3) and photo.shape == (360, 640, 3)
    # the kept detection is a reusable face: the same person as Miranda's portrait
    form = aiohttp.FormData()
    form.add_field("face1", f"detection:{face['detection_id']}")
    form.add_field("photo2", (FACES_DIR / "lin-manuel-miranda.png").read_bytes(), filename="lmm.png",
                   content_type="image/png")
    resp = await api.client.post("/v1/verify", data=form, headers=AUTH)
    verdict = await resp.json()
    assert resp.status == 200 and verdict["match"] is True, verdict


async def test_screen_replay_of_the_same_frames_is_not_alive(api: Api) -> None:
    body = await api.post(api.clips.replay, 200)
    assert body["alive"] is False and body["average_liveness"] < api.settings.models.liveness_threshold
    assert "detection_id" not in body["best_face"] or body["best_face"]["detection_id"] is None


async def test_multipart_upload_and_frames_parameter(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("video", api.clips.genuine, filename="clip.avi", content_type="video/x-msvideo")
    resp = await api.client.post("/v1/video-liveness", data=form, params={"frames": "12"}, headers=AUTH)
    body = await resp.json()
    assert resp.status == 200 and body["alive"] is True and body["frames_scored"] <= 12


async def test_bad_and_out_of_limit_videos_are_400(api: Api) -> None:
    bad = await api.post(b"this is not a video at all" * 100, 400)
    assert bad["error"]["message"].startswith("video:")
    assert "fps" in (await api.post(api.clips.fast, 400))["error"]["message"]
    assert "frames decoded" in (await api.post(api.clips.short, 400))["error"]["message"]
    v = api.settings.video_liveness
    old = (v.max_width, v.max_length_s)
    try:
        v.max_width = 320
        assert "larger than the limit" in (await api.post(api.clips.genuine, 400))["error"]["message"]
        v.max_width, v.max_length_s = old[0], 2.0  # the genuine clip lasts 30 frames / 8 fps = 3.75 s
        assert "longer than the limit" in (await api.post(api.clips.genuine, 400))["error"]["message"]
    finally:
        v.max_width, v.max_length_s = old


async def test_no_usable_face_is_406_and_refuse_policy(api: Api) -> None:
    assert (await api.post(api.clips.no_face, 406))["error"]["code"] == "no_usable_face"
    assert (await api.post(api.clips.two_people, 200))["frames_scored"] >= 10  # best: the better face is scored
    v = api.settings.video_liveness
    try:
        v.multiple_faces = "refuse"
        assert "faces" in (await api.post(api.clips.two_people, 406))["error"]["message"]
        v.secondary_face_ratio = 1.0  # only the widest face counts: one face, scored
        await api.post(api.clips.two_people, 200)
    finally:
        v.multiple_faces, v.secondary_face_ratio = "best", 0.5


async def test_too_large_is_413_and_wrong_type_is_415(api: Api) -> None:
    v = api.settings.video_liveness
    try:
        v.max_body_bytes = 64 * 1024
        assert (await api.post(api.clips.genuine, 413))["error"]["code"] == "payload_too_large"
    finally:
        v.max_body_bytes = 10 * 1024 * 1024
    await api.post(b"hello", 415, content_type="text/plain")
