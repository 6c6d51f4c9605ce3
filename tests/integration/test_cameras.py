"""Cameras are started and stopped by their config changes, without restarting anything."""

from __future__ import annotations

import asyncio

import pytest

from ops.demo import synthesize_clip
from ops.harness import LocalPipeline
from schemas.messages import CameraChanged
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration


def test_a_new_camera_streams_events_and_a_deleted_one_stops(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path, detector={"best_face_mode": "realtime", "realtime_interval_s": 0.5},
                            api={"media_root": str(tmp_path)})  # the file camera lies under it (URL policy)
    clip = tmp_path / "lobby.avi"
    people = synthesize_clip(clip, seconds=2.0)

    async def scenario() -> tuple[int, int]:
        pipeline = LocalPipeline(settings)
        async with pipeline.running():
            await pipeline.enrol(people)
            await pipeline.add_camera(CameraChanged(camera_id="lobby", url=str(clip), camera_group="entrance",
                                                    labels={"zone": "entrance", "floor": "1"}))
            for _ in range(600):
                if any(e.camera_id == "lobby" and e.matched for e in pipeline.events):
                    break
                await asyncio.sleep(0.1)
            await pipeline.add_camera(CameraChanged(camera_id="lobby", deleted=True))
            await asyncio.sleep(3)  # in-flight frames drain
            after_delete = len(pipeline.events)
            await asyncio.sleep(4)  # the file camera would have looped by now
            labelled = {tuple(sorted(e.labels.items())) for e in pipeline.events if e.camera_id == "lobby"}
            return after_delete, len(pipeline.events), labelled

    after_delete, later, labelled = asyncio.run(scenario())
    assert after_delete > 0
    assert later == after_delete
    # the camera's labels travelled frames -> faces -> events
    assert labelled == {(("floor", "1"), ("zone", "entrance"))}
