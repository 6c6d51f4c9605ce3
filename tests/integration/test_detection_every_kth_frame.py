"""Detection every k-th frame (``detector.detect_interval_s``), accuracy guard on the real clip: every frame of
``short_hamilton_clip.mp4`` (29.97 fps, so the default 0.1 s detects one frame in three and the tracker carries
the faces across the other two) through the real spine, and the clip's true cast is still found, each in
their own shots, and the enrolled Biden, who is not in it, never matched."""

from __future__ import annotations

import asyncio

import pytest

from ops.demo import process_video
from pipeline import metrics
from pipeline.settings import DetectorSettings
from tests.integration.conftest import settings_for
from tests.integration.test_pipeline import assert_the_true_cast, portraits

pytestmark = pytest.mark.integration


def _predicted() -> float:
    return sum(s.value for m in metrics.FRAMES_PREDICTED.collect() for s in m.samples if s.name.endswith("_total"))


def test_detecting_one_frame_in_three_still_finds_the_cast_and_never_biden(broker, shared_faces, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert DetectorSettings().detect_interval_s == 0.1  # the default this guards
    settings = settings_for(broker, tmp_path, decoder={"target_fps": 30.0})
    predicted = _predicted()
    result = asyncio.run(process_video(settings, shared_faces / "short_hamilton_clip.mp4", portraits(shared_faces),
                                       timeout_s=300, quiet=True))
    assert result.frames == 275
    assert _predicted() - predicted >= 275 * 0.6  # two frames in three were not detected
    assert_the_true_cast(result.events)
