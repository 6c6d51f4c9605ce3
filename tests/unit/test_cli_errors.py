"""The operator's CLI: a bad flag or environment value, or a missing file, is one clear line and a non-zero exit;
--help lists a command's own options and points to the settings reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def facestream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, check=False)


def test_bad_values_and_missing_files_are_one_line() -> None:
    cases = [
        (("run", "detector", "--kafka-partitions", "abc"), None, "kafka.partitions (--kafka-partitions"),
        (("ops", "status"), {"FACESTREAM_API_PORT": "x"}, "FACESTREAM_API_PORT): Input should be a valid integer"),
        (("demo", "--video", "/nonexistent/clip.mp4"), None, "--video /nonexistent/clip.mp4: no such file"),
        (("bench", "cameras", "--scenario", "4K"), None, "--scenario '4K': no scenario matches; they are: 1080p"),
    ]
    for args, env, expected in cases:
        done = facestream(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_help_shows_the_commands_own_options_and_points_to_the_reference() -> None:
    done = facestream("demo", "--help")
    assert done.returncode == 0
    assert "--video" in done.stdout and "--faces" in done.stdout
    assert "docs/configuration.md" in done.stdout
    assert "--webhooks-backoff-base-s" not in done.stdout  # 90 settings are not listed
    assert len(done.stdout.splitlines()) < 40
