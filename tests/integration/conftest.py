"""Shared fixtures for tests against the embedded broker: one broker per session, fresh topics per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ops.broker import EmbeddedBroker
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from ops.harness import VideoResult

SHARED_FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces"


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    if not (SHARED_FACES / "short_hamilton_clip.mp4").exists():
        pytest.skip(f"test media not found at {SHARED_FACES} (../shared beside the repo)")
    return SHARED_FACES


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def settings_for(broker: EmbeddedBroker, data_dir: Path, **sections: dict) -> Settings:
    """Settings on the shared broker with a topic prefix of their own (no crosstalk between tests)."""
    overrides: dict = {
        "bootstrap_servers": broker.bootstrap_servers,
        "data_dir": str(data_dir),
        "kafka": {"topic_prefix": f"t{uuid.uuid4().hex[:8]}.", "session_timeout_ms": 3000,
                  "heartbeat_interval_ms": 500, "partitions": 2},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(overrides)


# The clip's watch list (portrait files in ../shared/data/faces); Biden is not in the clip.
WATCH_LIST = {
    "Lin Manuel Miranda": "lin-manuel-miranda.png",
    "Alex Lacamoire": "alex-lacamoire.png",
    "Obama": "obama.jpg",
    "Biden": "biden.jpg",
}


def portraits(folder: Path) -> dict[str, Any]:
    import cv2

    return {name: cv2.imread(str(folder / file)) for name, file in WATCH_LIST.items()}


@pytest.fixture(scope="session")
def clip_reference(broker: EmbeddedBroker, shared_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> VideoResult:
    """The Hamilton clip through the spine in this one process, undisturbed, with ``WATCH_LIST`` enrolled: the
    events every disturbed or distributed run of the clip must reproduce (computed once per session)."""
    from ops.demo import process_video

    settings = settings_for(broker, tmp_path_factory.mktemp("spine"))
    return asyncio.run(process_video(settings, shared_faces / "short_hamilton_clip.mp4", portraits(shared_faces),
                                     timeout_s=300, quiet=True))
