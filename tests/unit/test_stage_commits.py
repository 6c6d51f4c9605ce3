"""The stage runner's commit rule (``pipeline.stage.PendingCommits``): what was acknowledged is committed at most
every ``kafka.commit_interval_ms``, never what a rebalance moved. Pure: records as plain objects, no broker."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.counters import CountersAgent
from agents.detector import DetectorAgent
from agents.extractor import ExtractorAgent
from agents.matcher import MatcherAgent
from pipeline.settings import Settings
from pipeline.stage import AgentBase, PendingCommits, StageRunner, _Moved


def records(topic: str, partition: int, *offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(topic, partition, o, 0, 0, None, b"", None, 0, 0, ()) for o in offsets]


def test_acknowledged_offsets_are_committed_at_most_once_per_interval_and_none_is_lost() -> None:
    pending = PendingCommits(0.2)
    pending.add(records("frames", 0, 10))
    assert pending.due(100.0)  # the first commit is at once
    assert pending.take(100.0) == {("frames", 0): 11}
    pending.add(records("frames", 0, 11))
    pending.add(records("frames", 1, 3, 4))
    pending.add(records("frames", 0, 12))
    assert not pending.due(100.1)  # within the interval: kept for a later batch
    assert pending.due(100.2)
    assert pending.take(100.2) == {("frames", 0): 13, ("frames", 1): 5}  # the newest of each partition
    assert not pending.due(500.0)  # nothing acknowledged since: nothing to commit


def test_every_batch_is_committed_at_interval_zero() -> None:
    pending = PendingCommits(Settings(kafka={"commit_interval_ms": 0}).kafka.commit_interval_ms / 1000)
    for offset in range(3):
        pending.add(records("faces", 2, offset))
        assert pending.due(1.0) and pending.take(1.0) == {("faces", 2): offset + 1}


async def test_a_rebalance_drops_the_moved_partitions_uncommitted_offsets() -> None:
    moved: list[set[tuple[str, int]]] = []

    class Agent(AgentBase):
        def partitions_changed(self, partitions: set[tuple[str, int]]) -> None:
            moved.append(partitions)

    pending = PendingCommits(10.0)
    pending.add(records("frames", 0, 7))
    pending.add(records("frames", 1, 8))
    listener: Any = _Moved(Agent(), pending)
    await listener.on_partitions_revoked({TopicPartition("frames", 0)})
    assert pending.offsets == {("frames", 1): 9}  # partition 0 replays from its last commit at its new owner
    await listener.on_partitions_assigned({TopicPartition("frames", 1)})
    assert pending.offsets == {} and moved == [{("frames", 0)}, {("frames", 1)}]


def test_only_the_spine_stages_coalesce_their_commits() -> None:
    """Their outputs carry deterministic ids; a sink such as the counters recounts at most one batch per crash."""
    assert DetectorAgent.replay_safe and ExtractorAgent.replay_safe and MatcherAgent.replay_safe
    assert not CountersAgent.replay_safe and not AgentBase.replay_safe
    settings = Settings(kafka={"commit_interval_ms": 200})
    nothing: Any = None
    for agent, interval in ((AgentBase(), 0.0), (Agent(), 0.2)):
        runner = StageRunner(agent, settings=settings, producer=nothing, membership=nothing)
        assert runner._pending.interval_s == interval


class Agent(AgentBase):
    replay_safe = True
