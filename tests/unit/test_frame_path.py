"""The detector's frame path: the reduced decode every frame's colour signature reads, one full JPEG decode
(simplejpeg, OpenCV as the fallback) for the frames detected, and the downscale to the detector's input. Cheap:
small synthetic images, no models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agents.detector import decode_jpeg, decode_preview
from agents.shots import SIGNATURE_SIZE, colour_signature
from models.centerface import downscale


def _picture(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    image = cv2.resize(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8), (width, height))
    return np.ascontiguousarray(image)


def test_decode_gives_opencvs_pixels_for_colour_and_grey_jpegs() -> None:
    image = _picture(136, 240)
    for source in (image, image[:, :, 0]):
        ok, buf = cv2.imencode(".jpg", source, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        decoded = decode_jpeg(buf.tobytes())
        assert decoded.shape == (136, 240, 3) and decoded.dtype == np.uint8
        assert np.array_equal(decoded, cv2.imdecode(buf, cv2.IMREAD_COLOR))


def test_decode_falls_back_to_opencv_and_refuses_what_neither_reads() -> None:
    ok, png = cv2.imencode(".png", _picture(40, 48))
    assert ok and decode_jpeg(png.tobytes()).shape == (40, 48, 3)  # not a JPEG: OpenCV still reads it
    for bad in (b"", b"not a jpeg", png.tobytes()[:20]):
        with pytest.raises(ValueError, match="undecodable JPEG"):
            decode_jpeg(bad)


def test_downscale_reaches_the_planned_size_close_to_one_area_resize() -> None:
    image = _picture(1080, 1920)
    for width, height in ((768, 432), (960, 540), (640, 360), (1920, 1080), (1000, 563)):
        small = downscale(image, width, height)
        assert small.shape == (height, width, 3)
        direct = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(np.int16) - direct).mean() < 1.0


def test_the_preview_is_the_smallest_dct_scale_for_the_signature_and_signs_as_the_full_frame() -> None:
    for height, width, expected in ((1080, 1920, (135, 240)), (360, 640, (45, 80)), (40, 48, (40, 48))):
        scene = np.random.default_rng(3).integers(0, 256, (9, 16, 3), dtype=np.uint8)  # a few lit regions
        image = cv2.resize(scene, (width, height), interpolation=cv2.INTER_LINEAR)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        preview = decode_preview(buf.tobytes())
        assert preview.shape[:2] == expected and preview.dtype == np.uint8
        assert preview.shape[1] >= min(width, SIGNATURE_SIZE[0]) and preview.shape[0] >= min(height, SIGNATURE_SIZE[1])
        full = colour_signature(decode_jpeg(buf.tobytes()))
        assert 0.5 * float(np.abs(colour_signature(preview) - full).sum()) < 0.06  # cuts are > 0.3 apart
    ok, png = cv2.imencode(".png", _picture(40, 48))
    assert ok and decode_preview(png.tobytes()).shape == (40, 48, 3)  # not a JPEG: the full decode's fallback
    with pytest.raises(ValueError, match="undecodable JPEG"):
        decode_preview(b"not a jpeg")


def test_a_five_to_four_step_is_area_averaging_taken_as_one_bilinear_remap() -> None:
    from models.centerface import _area_positions

    positions = _area_positions(10, 8)
    assert positions is not None and np.allclose(positions, [0.2, 1.4, 2.6, 3.8, 5.2, 6.4, 7.6, 8.8])
    assert _area_positions(1000, 563) is None  # some output pixel spans three source pixels: INTER_AREA itself
    for source, (width, height) in (((1080, 1920), (768, 432)), ((360, 640), (512, 288))):
        image = _picture(*source)
        reduced = image if source[0] == 360 else cv2.resize(image, (960, 540), interpolation=cv2.INTER_AREA)
        area = cv2.resize(reduced, (width, height), interpolation=cv2.INTER_AREA)
        assert np.abs(downscale(image, width, height).astype(np.int16) - area).max() <= 1
