"""The episodes stage as a real process on the embedded broker: SIGKILLed mid-stream and restarted, it leaves
the same episodes as the pure builder run undisturbed on the same events (changelog replay + event-id dedup)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agents.episode_rules import EpisodeBuilder, EpisodeRules
from connectors.sql.engine import open_sql
from connectors.sql.episodes import EpisodeRepository
from models.faces import confidences
from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from schemas.messages import EpisodeChanged, FaceEvent, StreamEnd
from schemas.topics import CORE_TOPICS, EPISODES, EVENTS
from tests.integration.conftest import settings_for
from tests.unit.notify_helpers import event, near, person

pytestmark = pytest.mark.integration

VIDEO = "vid-episodes"


def clip_like_events() -> list[FaceEvent]:
    """400 events of 8 people coming and going over ~20 min of video time, one camera, one file."""
    out = []
    for i in range(400):
        who = (i // 7) % 8
        t = 1000.0 + i * 3.0 + (who * 0.1)
        dossier = f"d{who}" if who < 3 else None
        out.append(event(f"video:x:{i}", t, near(person(who), 0.97, i), quality=0.3 + (i % 5) / 10,
                         dossier=dossier, confidence=0.9 if dossier else 0.2, camera="video:x", video_id=VIDEO))
    return out


def _start(settings, log: Path) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = {**os.environ, "FACESTREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "FACESTREAM_DATA_DIR": str(settings.data_dir),
           "FACESTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
           "FACESTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000", "FACESTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
           "FACESTREAM_KAFKA_PARTITIONS": str(settings.kafka.partitions),
           "FACESTREAM_KAFKA_MAX_BATCH": "8"}
    return subprocess.Popen([sys.executable, "-m", "ops.cli", "run", "episodes"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def summary(episodes) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    return {e["episode_id"]: (e["event_count"], e["first_event"]["event_id"], e["last_event"]["event_id"],
                              e["best_event"]["event_id"], e["dossier_id"], e["closed"], e["close_reason"])
            for e in episodes}


def test_killed_and_restarted_episode_stage_gives_the_same_episodes(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path)
    events = clip_like_events()
    reference = EpisodeBuilder(confidences, EpisodeRules.from_settings(settings.episodes))
    for e in events:
        reference.add(e, now=0)
    expected_changes = [c for c in reference.end_stream(VIDEO)]
    assert len(expected_changes) >= 1

    async def scenario() -> dict[str, tuple]:
        provision_topics(settings, CORE_TOPICS)
        producer = AsyncProducer(settings)
        outputs: list[EpisodeChanged] = []
        stop = asyncio.Event()
        reader = asyncio.create_task(replay_topic(settings, EPISODES, outputs.append, stop))
        proc = _start(settings, tmp_path / "episodes.log")
        try:
            half = len(events) // 2
            await producer.send_all((EVENTS, e.camera_id, e) for e in events[:half])
            for _ in range(600):  # kill as soon as the stage is producing: mid-stream
                if outputs:
                    break
                await asyncio.sleep(0.05)
            assert outputs, "the stage produced nothing"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await producer.send_all((EVENTS, e.camera_id, e) for e in events[half:])
            await producer.send(EVENTS, "video:x", StreamEnd(camera_id="video:x", video_id=VIDEO))
            proc = _start(settings, tmp_path / "episodes.log")
            engine = await open_sql(settings)
            try:
                repo = EpisodeRepository(engine)
                for _ in range(1200):
                    stored = await repo.list(limit=1000)
                    if stored and all(e.closed for e in stored) and len(stored) >= len(expected_changes):
                        break
                    await asyncio.sleep(0.1)
                return summary([{**e.model_dump(mode="json"), "episode_id": e.id} for e in await repo.list(limit=1000)])
            finally:
                await engine.dispose()
        finally:
            stop.set()
            await reader
            proc.terminate()
            proc.wait(timeout=20)
            await producer.close()

    got = asyncio.run(scenario())
    # every closed episode of the undisturbed run (closed before the end marker, or by it)
    closed = {}
    probe = EpisodeBuilder(confidences, EpisodeRules.from_settings(settings.episodes))
    for e in events:
        for c in probe.add(e, now=0):
            if c.change == "close":
                closed[c.episode.episode_id] = c.episode
    for c in probe.end_stream(VIDEO):
        closed[c.episode.episode_id] = c.episode
    want = summary([c.model_dump(mode="json") for c in closed.values()])
    assert got == want
