"""Track-level decisions: shot cuts end tracks, and a track's descriptor averages its best faces."""

from __future__ import annotations

import numpy as np

from agents.extractor import track_descriptor
from agents.shots import colour_signature, is_cut


def test_a_scene_change_is_a_cut_and_motion_is_not() -> None:
    rng = np.random.default_rng(0)
    stage = np.zeros((360, 640, 3), np.uint8)
    stage[:, :, 2] = 120  # a red-lit stage
    moved = np.roll(stage, 40, axis=1).copy()
    moved[100:200, 100:200] = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)  # someone walks in
    audience = np.full((360, 640, 3), (40, 90, 30), np.uint8)  # another shot
    first = colour_signature(stage)
    assert not is_cut(None, first, 0.3)
    assert not is_cut(first, colour_signature(moved), 0.3)
    assert is_cut(first, colour_signature(audience), 0.3)


def test_track_descriptor_is_the_normalised_quality_weighted_mean() -> None:
    a, b = np.eye(128, dtype=np.float32)[0], np.eye(128, dtype=np.float32)[1]
    out = track_descriptor(np.stack([a, b]), np.array([0.9, 0.3], np.float32))
    assert np.isclose(np.linalg.norm(out), 1.0)
    assert out[0] > out[1] > 0 and np.isclose(out[0] / out[1], 3.0)
    single = track_descriptor(a[None], np.array([0.5], np.float32))
    np.testing.assert_allclose(single, a)


def test_detection_keeps_a_32_px_face_16_px_wide_whatever_the_side_cap() -> None:
    from models.centerface import plan_input

    hd = plan_input(1080, 1920, max_side=640, min_face=32)
    assert (hd.resized_w, hd.resized_h, hd.width, hd.height) == (960, 540, 960, 544)
    assert plan_input(360, 640, max_side=640, min_face=32).scale_x == 1.0  # never upscaled
    assert plan_input(1080, 1920, max_side=640, min_face=0).resized_w == 640  # the side cap alone
    assert plan_input(4000, 6000, max_side=640, min_face=32).resized_w == 2048  # never beyond MAX_INPUT_SIDE
    sd = plan_input(360, 640, max_side=512, min_face=32)  # the default: a 640x360 frame at 512x288, no padding
    assert (sd.resized_w, sd.resized_h, sd.width, sd.height) == (512, 288, 512, 288)
