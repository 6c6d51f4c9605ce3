"""The spine end to end on the real clip: decoder -> detector -> extractor -> matcher over the embedded broker,
and a stage SIGKILLed mid-clip loses no event.

The clip's true cast (shared/ARCHITECTURE.md): four shots, cuts at frames 20, 82 and 211 of 275 (29.97 fps).
Lin-Manuel Miranda sings in shots 1 and 3; Alex Lacamoire is the pianist (tiny in shot 1, profile close-up in
shot 2); Barack Obama sits in the audience in shot 4; Biden is not in it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models.faces import FaceModels
from ops.harness import gallery_changes
from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from schemas.messages import FaceEvent, StreamEnd, VideoJob
from schemas.topics import CORE_TOPICS, EVENTS, GALLERY, VIDEO_JOBS
from tests.integration.conftest import portraits, settings_for

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def undisturbed(clip_reference):  # type: ignore[no-untyped-def]
    return clip_reference  # the session's undisturbed run (tests/integration/conftest.py)


CLIP_FPS = 29.97
SHOT_2_STARTS_S, SHOT_3_STARTS_S, SHOT_4_STARTS_S = 20 / CLIP_FPS, 82 / CLIP_FPS, 211 / CLIP_FPS


def offset_s(event: FaceEvent) -> float:
    """Position of the event's face in the clip, in seconds (every event of a file carries it)."""
    assert event.offset_s is not None, event.event_id
    return event.offset_s


def assert_the_true_cast(events: list[FaceEvent]) -> dict[str, list[float]]:
    """The clip's true cast (ARCHITECTURE.md) found, each in their own shots, Biden never, no event id twice;
    returns the matched offsets by name."""
    by_name: dict[str, list[float]] = {}
    for e in events:
        if e.matched:
            by_name.setdefault(e.dossier_name, []).append(offset_s(e))
    assert {"Lin Manuel Miranda", "Alex Lacamoire", "Obama"} <= set(by_name), by_name
    assert "Biden" not in by_name
    assert all(t < SHOT_3_STARTS_S for t in by_name["Alex Lacamoire"]), by_name
    assert all(t >= SHOT_4_STARTS_S for t in by_name["Obama"]), by_name
    assert len({e.event_id for e in events}) == len(events)
    return by_name


def test_the_clips_true_cast_is_found_and_biden_never(undisturbed) -> None:  # type: ignore[no-untyped-def]
    by_name = assert_the_true_cast(undisturbed.events)
    assert all(t < SHOT_2_STARTS_S or SHOT_3_STARTS_S <= t < SHOT_4_STARTS_S for t in by_name["Lin Manuel Miranda"])
    assert all(e.faces_used >= 1 for e in undisturbed.events)
    assert undisturbed.frames > 50


def track_and_seq(event: FaceEvent) -> tuple[str, str]:
    """The event id without its camera (the two runs use different camera ids)."""
    _, track, seq = event.event_id.rsplit(":", 2)
    return track, seq


def _start_role(role: str, settings, log: Path) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = {**os.environ, "FACESTREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "FACESTREAM_DATA_DIR": str(settings.data_dir),
           "FACESTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
           "FACESTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000", "FACESTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
           "FACESTREAM_KAFKA_PARTITIONS": str(settings.kafka.partitions)}
    return subprocess.Popen([sys.executable, "-m", "ops.cli", "run", role], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


@pytest.mark.parametrize("victim", ["extractor"])
def test_a_stage_killed_mid_clip_loses_no_event(victim, undisturbed, broker, shared_faces, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path)
    expected = {track_and_seq(e) for e in undisturbed.events}
    seen: list[FaceEvent] = []

    async def scenario() -> None:
        provision_topics(settings, CORE_TOPICS)
        models = FaceModels.load(settings.models)
        producer = AsyncProducer(settings)
        for change in gallery_changes(models, portraits(shared_faces)):
            await producer.send(GALLERY, "k", change)
        spine = ("decoder", "detector", "extractor", "matcher")
        procs = {r: _start_role(r, settings, tmp_path / f"{r}.log") for r in spine}
        stop, done = asyncio.Event(), asyncio.Event()

        def collect(msg: object) -> None:
            if isinstance(msg, FaceEvent):
                seen.append(msg)
            elif isinstance(msg, StreamEnd):
                done.set()

        reader = asyncio.create_task(replay_topic(settings, EVENTS, collect, stop))
        try:
            await producer.send(VIDEO_JOBS, "v", VideoJob(
                video_id="fault", path=str(shared_faces / "short_hamilton_clip.mp4"), camera_id="video:demo-x"))
            for _ in range(600):  # kill as soon as the first event is out: the clip is mid-way
                if seen:
                    break
                await asyncio.sleep(0.1)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            procs[victim] = _start_role(victim, settings, tmp_path / f"{victim}.log")
            await asyncio.wait_for(done.wait(), 240)
        finally:
            stop.set()
            await reader
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(timeout=20)
            await producer.close()

    asyncio.run(scenario())
    assert seen, "no event at all"
    assert {track_and_seq(e) for e in seen} == expected
