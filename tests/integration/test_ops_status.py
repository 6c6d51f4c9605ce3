"""ops status against the embedded broker: two detector workers share the frames partitions."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ops import status
from ops.broker import EmbeddedBroker
from pipeline.kafka import AsyncProducer
from pipeline.membership import AssignmentReporter, Membership
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

PREFIX = "st."
GROUP = f"{PREFIX}detector"
FRAMES = f"{PREFIX}frames"


def _provision(servers: str) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    topics = [NewTopic(FRAMES, 4, 1), NewTopic(f"{PREFIX}stage-members", 1, 1)]
    for future in admin.create_topics(topics).values():
        future.result()
    producer = Producer({"bootstrap.servers": servers})
    for i in range(40):
        producer.produce(FRAMES, key=f"cam-{i % 8}".encode(), value=b"x" * 64)
    producer.flush(10)


async def _worker(servers: str, membership: Membership, name: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        FRAMES, bootstrap_servers=servers, group_id=GROUP, client_id=name, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=3000, heartbeat_interval_ms=300,
    )
    reporter = AssignmentReporter(membership, "detector", GROUP, name)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5)
            if batches:
                await consumer.commit()
            reporter.update(consumer.assignment())
    finally:
        await consumer.stop()
        reporter.close()


async def test_status_shows_two_members_sharing_partitions() -> None:
    async with EmbeddedBroker() as broker:
        servers = broker.bootstrap_servers
        settings = Settings(bootstrap_servers=servers, kafka={"topic_prefix": PREFIX})
        await asyncio.get_running_loop().run_in_executor(None, _provision, servers)
        stop = asyncio.Event()
        producer = AsyncProducer(settings)  # one per process, shared by its reporters
        membership = Membership(producer)
        membership.restarted("detector")  # as `up` counts a crashed role
        workers = [asyncio.create_task(_worker(servers, membership, f"detector@w{i}", stop)) for i in (1, 2)]
        try:
            group = await _wait_for_split(settings)
            text = status.render(await status.collect(settings), PREFIX)
        finally:
            stop.set()
            for task in workers:
                with contextlib.suppress(Exception):
                    await task
            await producer.close()
    print(text)
    assert sorted(m.client_id for m in group.members) == ["detector@w1", "detector@w2"]
    owned = [set(m.partitions or ()) for m in group.members]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert owned[0] | owned[1] == {(FRAMES, p) for p in range(4)}
    assert sum(p.committed or 0 for p in group.partitions) == 40  # every message consumed and committed
    assert [m.restarts for m in group.members] == [1, 1] and "restarts" in text
    assert status.EMBEDDED_NOTE in text and "detector@w1" in text and "detector@w2" in text
    assert "extractor: group st.extractor - no worker has joined" in text


async def _wait_for_split(settings: Settings) -> status.GroupStatus:
    """Poll until both members are listed with disjoint reported partitions (rebalances settle in seconds)."""
    last = None
    for _ in range(40):
        cluster = await status.collect(settings)
        assert cluster.embedded
        last = next(g for g in cluster.groups if g.group == GROUP)
        parts = [set(m.partitions or ()) for m in last.members]
        if (len(parts) == 2 and all(parts) and not parts[0] & parts[1] and len(parts[0] | parts[1]) == 4
                and sum(p.committed or 0 for p in last.partitions) == 40):
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"members never shared the partitions: {last}")
