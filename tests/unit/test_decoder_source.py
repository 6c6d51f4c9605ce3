"""Frame sources: sampling to the target fps, downscaling, and clean refusal of what is not a video."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from agents.decoder import FrameSource, SourceError
from pipeline.settings import DecoderSettings


def write_clip(path: Path, frames: int = 30, fps: int = 30, size: tuple[int, int] = (1920, 1080)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), i * 8 % 255, np.uint8))
    writer.release()
    return path


def read_all(source: FrameSource) -> list:
    out = []
    while (frame := source.read()) is not None:
        out.append(frame)
    return out


def test_a_30fps_file_is_sampled_to_the_target_rate_and_downscaled(tmp_path: Path) -> None:
    source = FrameSource(str(write_clip(tmp_path / "c.avi")), DecoderSettings(target_fps=10, max_width=640))
    frames = read_all(source)
    assert [f.index for f in frames] == list(range(0, 30, 3))
    assert {(f.width, f.height) for f in frames} == {(640, 360)}
    assert frames[1].position_s == pytest.approx(0.1)
    assert all(f.jpeg[:2] == b"\xff\xd8" for f in frames)
    assert source.interval_s == pytest.approx(0.1)  # a file camera of it plays one frame every 0.1 s


def test_a_file_slower_than_the_target_rate_plays_at_its_own(tmp_path: Path) -> None:
    source = FrameSource(str(write_clip(tmp_path / "c.avi", frames=15, fps=15, size=(320, 180))),
                         DecoderSettings(target_fps=25))
    assert [f.index for f in read_all(source)] == list(range(15))
    assert source.interval_s == pytest.approx(1 / 15)  # as a camera: 15 frames/s, not 25 (played faster)


def test_files_that_are_not_videos_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError):
        FrameSource(str(junk), DecoderSettings())
    with pytest.raises(SourceError):
        FrameSource(str(tmp_path / "missing.mp4"), DecoderSettings())


def test_a_source_closed_during_a_read_on_another_thread_waits_for_it() -> None:
    """A stream task cancelled mid-read closes its source on another executor thread while the read goes on:
    the close must wait (FFmpeg aborts the process when a codec is freed under its decoding threads), and a read
    after the close ends the source."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import FACES_DIR

    clip = FACES_DIR / "short_hamilton_clip.mp4"  # H.264: FFmpeg decodes it on threads of its own
    if not clip.is_file():
        pytest.skip(f"test media not found at {clip}")
    with ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            source = FrameSource(str(clip), DecoderSettings(target_fps=30))
            reads = [pool.submit(source.read) for _ in range(3)]
            source.close()
            assert all(r.result() is None or r.result().jpeg[:2] == b"\xff\xd8" for r in reads)
            assert source.read() is None
