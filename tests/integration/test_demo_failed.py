"""`facestream demo` on a video the decoder cannot read stops as soon as the video's status is failed, with one
readable line and exit 1 (it used to wait for its 600 s timeout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_stops_on_a_failed_video_with_one_line(tmp_path: Path) -> None:
    video = tmp_path / "not-a-video.mp4"
    video.write_text("plain text, not a video\n")
    done = subprocess.run([sys.executable, "-m", "ops.cli", "demo", "--video", str(video),
                           "--data-dir", str(tmp_path / "data")],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]  # what a terminal shows last
    expected = f"failed: SourceError: cannot open source '{video}'"
    assert last.startswith("facestream: video demo-") and last.endswith(expected), done.stderr[-3000:]
