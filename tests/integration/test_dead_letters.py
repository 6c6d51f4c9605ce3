"""Poison input goes to the dead-letter topic with its reason, and the stage carries on."""

from __future__ import annotations

import asyncio
from typing import Literal

import cv2
import pytest

from agents.detector import encode_jpeg
from agents.enrol import largest_face
from agents.extractor import ExtractorAgent
from models.faces import FaceModels
from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from pipeline.membership import Membership
from pipeline.stage import StageRunner
from schemas.messages import DeadLetter, DescribedFace, Face
from schemas.topics import CORE_TOPICS, DEAD_LETTER, DESCRIPTORS, FACES
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration


def face_message(face_id: str, chip: bytes, encoding: Literal["bgr", "jpeg"] = "bgr") -> Face:
    return Face(face_id=face_id, camera_id="cam", track_id=1, seq=0, frame_no=0, timestamp=0.0,
                bbox=(0, 0, 10, 10), landmarks=((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)), det_score=0.9,
                quality=0.8, chip=chip, chip_encoding=encoding)


def test_poison_messages_are_dead_lettered_and_the_stage_keeps_going(broker, shared_faces, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path)
    models = FaceModels.load(settings.models)
    image = cv2.imread(str(shared_faces / "obama.jpg"))
    chip = models.align(image, largest_face(models, image))

    async def scenario() -> tuple[list[DeadLetter], list[DescribedFace]]:
        provision_topics(settings, CORE_TOPICS)
        producer = AsyncProducer(settings)
        membership = Membership(producer)
        await producer.send(FACES, "cam", b"{not json")
        await producer.send(FACES, "cam", face_message("cam:1:0", b"not a jpeg", "jpeg"))
        await producer.send(FACES, "cam", face_message("cam:3:0", chip.tobytes()[:-3]))
        await producer.send(FACES, "cam", face_message("cam:2:0", chip.tobytes()))
        await producer.send(FACES, "cam", face_message("cam:4:0", encode_jpeg(chip, 95), "jpeg"))
        dead: list[DeadLetter] = []
        described: list[DescribedFace] = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(StageRunner(ExtractorAgent(settings=settings, models=models), settings=settings,
                                                 producer=producer, membership=membership).run(stop)),
                 asyncio.create_task(replay_topic(settings, DEAD_LETTER, dead.append, stop)),
                 asyncio.create_task(replay_topic(settings, DESCRIPTORS, described.append, stop))]
        for _ in range(300):
            if len(dead) >= 3 and len(described) >= 2:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        await producer.close()
        return dead, described

    dead, described = asyncio.run(scenario())
    assert [d.stage for d in dead] == ["extractor", "extractor", "extractor"]
    assert "Invalid JSON" in dead[0].reason and dead[0].payload == b"{not json"
    assert "undecodable JPEG" in dead[1].reason
    assert "raw BGR chip has 67497 bytes" in dead[2].reason
    assert FACES.decode(dead[2].payload).face_id == "cam:3:0"  # the dead letter holds the binary record as sent
    assert [d.face.face_id for d in described] == ["cam:2:0", "cam:4:0"]
    assert all(d.face.chip == b"" for d in described)  # the chip stops at the extractor
