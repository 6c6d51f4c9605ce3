"""A stage on the broker during a rolling upgrade: a record from a producer one minor version ahead (extra
fields) is processed; one from a newer major version is dead-lettered with a reason that says so."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from agents.matcher import MatcherAgent
from agents.matching import Gallery
from models.faces import confidences
from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from pipeline.membership import Membership
from pipeline.stage import StageRunner
from schemas.messages import DeadLetter, DescribedFace, Face, FaceEvent
from schemas.topics import CORE_TOPICS, DEAD_LETTER, DESCRIPTORS, EVENTS
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration


def described(face_id: str, version: str, extra: bool) -> bytes:
    face = Face(face_id=face_id, camera_id="cam", track_id=1, seq=0, frame_no=0, timestamp=0.0,
                bbox=(0, 0, 10, 10), landmarks=((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)), det_score=0.9,
                quality=0.8, chip=b"", chip_encoding="jpeg")
    doc = orjson.loads(DescribedFace(face=face, descriptor=[1.0] + [0.0] * 127).to_bytes())
    doc["schema_version"] = version
    if extra:
        doc["liveness"] = 0.97  # a field the next minor version adds
        doc["face"]["blur"] = 0.1
    return orjson.dumps(doc)


def test_newer_minor_processed_newer_major_dead_lettered(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path)

    async def scenario() -> tuple[list[DeadLetter], list[object]]:
        provision_topics(settings, CORE_TOPICS)
        producer = AsyncProducer(settings)
        await producer.send(DESCRIPTORS, "cam", described("cam:1:0", "1.1", extra=True))
        await producer.send(DESCRIPTORS, "cam", described("cam:2:0", "2.0", extra=True))
        await producer.send(DESCRIPTORS, "cam", described("cam:3:0", "1.0", extra=False))
        dead: list[DeadLetter] = []
        events: list[object] = []
        stop = asyncio.Event()
        agent = MatcherAgent(settings=settings, gallery=Gallery(confidences, settings.matcher.threshold))
        tasks = [asyncio.create_task(StageRunner(agent, settings=settings, producer=producer,
                                                 membership=Membership(producer)).run(stop)),
                 asyncio.create_task(replay_topic(settings, DEAD_LETTER, dead.append, stop)),
                 asyncio.create_task(replay_topic(settings, EVENTS, events.append, stop))]
        for _ in range(300):
            if dead and len(events) >= 2:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        await producer.close()
        return dead, events

    dead, events = asyncio.run(scenario())
    assert [e.event_id for e in events if isinstance(e, FaceEvent)] == ["cam:1:0", "cam:3:0"]
    assert len(dead) == 1 and dead[0].stage == "matcher"
    assert "schema_version 2.0 is a newer major version than this consumer's 1.0: upgrade" in dead[0].reason
    assert orjson.loads(dead[0].payload)["face"]["face_id"] == "cam:2:0"
