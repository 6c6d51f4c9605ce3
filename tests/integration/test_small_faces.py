"""Small faces at source resolution: in a 1080p scene every face of 32 px or more is detected and tracked, and
posted once it reaches the posting filters (default 40 px)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from models.faces import FaceModels
from ops.harness import LocalPipeline
from ops.synthetic import FacePath, write_crowd_clip
from schemas.messages import FaceEvent
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration

IN_CLIP = {"Lin Manuel Miranda": "lin-manuel-miranda.png", "Alex Lacamoire": "alex-lacamoire.png",
           "Obama": "obama2.jpg", "Biden": "biden.jpg"}
ENROLLED = {**IN_CLIP, "Obama": "obama.jpg"}  # Obama enrolled from another photo than the one in the clip


def _people(folder: Path, files: dict[str, str]) -> dict[str, np.ndarray]:
    return {name: cv2.imread(str(folder / file)) for name, file in files.items()}


@pytest.fixture(scope="module")
def crowd(broker, shared_faces, face_models: FaceModels, tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("crowd")
    in_clip = {**_people(shared_faces, IN_CLIP), "Eileen Collins": np.ascontiguousarray(data.astronaut()[:, :, ::-1])}
    paths = write_crowd_clip(folder / "crowd.avi", face_models, in_clip)  # 24 frames at 8 fps, faces 32 -> 60 px
    settings = settings_for(broker, folder / "data")

    async def run() -> list[FaceEvent]:
        async with LocalPipeline(settings).running() as pipeline:
            await pipeline.enrol(_people(shared_faces, ENROLLED), face_models)
            return (await pipeline.process(folder / "crowd.avi", "crowd", timeout_s=300)).events

    return paths, asyncio.run(run())


def _path_of(event: FaceEvent, paths: list[FacePath]) -> FacePath:
    cx, cy = (event.bbox[0] + event.bbox[2]) / 2, (event.bbox[1] + event.bbox[3]) / 2
    return min(paths, key=lambda p: min(abs((b[0] + b[2]) / 2 - cx) + abs((b[1] + b[3]) / 2 - cy) for b in p.boxes))


def test_every_small_face_is_tracked_from_32_px_and_posted_once(crowd) -> None:  # type: ignore[no-untyped-def]
    paths, events = crowd
    assert len(events) == len(paths), [(e.track_id, e.bbox) for e in events]
    assert {_path_of(e, paths).name for e in events} == {p.name for p in paths}
    for event in events:
        assert event.track_id // 1000 == 0, "tracked from the first frame, where the face is 32 px wide"
        assert event.bbox[2] - event.bbox[0] >= 40  # posted at or above the posting minimum
    matched = {_path_of(e, paths).name: e.dossier_name for e in events if e.matched}
    assert matched == {name: name for name in IN_CLIP}  # each enrolled person matched, Eileen Collins not
