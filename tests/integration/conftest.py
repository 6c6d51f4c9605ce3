"""Shared fixtures for tests against the embedded broker: one broker per session, fresh topics per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.broker import EmbeddedBroker
from pipeline.settings import Settings, load_settings

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
