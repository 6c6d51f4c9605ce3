"""``replay_topic`` on a topic the broker does not have yet: it waits for the topic, then replays it from the start
(a reader started before provisioning, e.g. an API instance up before the first role created the topics)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from schemas.messages import CameraChanged
from schemas.topics import CAMERAS
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration


def test_a_replay_started_before_its_topic_exists_waits_for_it_and_reads_it_all(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path)

    async def scenario() -> tuple[list[CameraChanged], bool]:
        got: list[CameraChanged] = []
        stop, caught_up = asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(replay_topic(settings, CAMERAS, got.append, stop, caught_up))
        await asyncio.sleep(0.5)  # the reader's consumer has started without the topic in its metadata
        early = caught_up.is_set() or reader.done()  # must still be waiting, not "caught up" on nothing
        await asyncio.to_thread(provision_topics, settings, [CAMERAS])
        producer = AsyncProducer(settings)
        for n in range(3):
            await producer.send(CAMERAS, f"cam-{n}", CameraChanged(camera_id=f"cam-{n}", url=f"rtsp://cam-{n}/"))
        for _ in range(100):
            if len(got) >= 3 or reader.done():
                break
            await asyncio.sleep(0.1)
        stop.set()
        await reader  # re-raises what the reader raised
        await producer.close()
        return got, early

    got, early = asyncio.run(scenario())
    assert not early
    assert sorted(c.camera_id for c in got) == ["cam-0", "cam-1", "cam-2"]


def test_a_replay_stopped_before_its_topic_exists_ends_quietly(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path)

    async def scenario() -> None:
        stop = asyncio.Event()
        reader = asyncio.create_task(replay_topic(settings, CAMERAS, lambda _: None, stop))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(reader, 5)

    asyncio.run(scenario())
