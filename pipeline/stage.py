"""The stage runner: binds an Agent (plain domain logic) to its topics with one explicit commit path.

The loop, in order, for every batch:
  1. take up to ``kafka.max_batch`` records (or the agent's ``batch_limit``) from the input topics of the stage's
     consumer group;
     undecodable records go to the dead-letter topic at once;
  2. ``outputs = await agent.handle(batch)``; if it raises, handle each message alone and dead-letter
     the ones that still raise;
  3. produce the outputs and wait until the broker acknowledged every one;
  4. commit the batch's offsets; an agent whose replays are harmless (``Agent.replay_safe``: the spine's
     detector, extractor and matcher, whose outputs carry deterministic ids) has the offsets acknowledged so
     far committed at most every ``kafka.commit_interval_ms`` (``PendingCommits``; also after a quiet fetch
     and at a stop).
A crash between 3 and 4 replays what was acknowledged but not committed: outputs carry deterministic ids, so
consumers drop duplicates. A rebalance drops the uncommitted offsets of the partitions it moved: their new owner
(or this stage, when they come back) replays them from the last commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from pipeline import metrics
from pipeline.kafka import AsyncProducer, group_id, make_consumer
from pipeline.membership import Membership
from pipeline.settings import Settings
from schemas.base import Message, SchemaError
from schemas.messages import DeadLetter
from schemas.topics import DEAD_LETTER, TopicSpec

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Incoming:
    """One consumed, decoded message."""

    topic: TopicSpec
    key: str | None
    message: Message  # decoded by the topic's schema: one of the TopicSpec's message classes
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True)
class Output:
    """One message to produce."""

    topic: TopicSpec
    key: str
    message: Message


class Agent(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> tuple[TopicSpec, ...]: ...
    @property
    def replay_safe(self) -> bool: ...

    async def start(self) -> None: ...
    async def handle(self, batch: list[Incoming]) -> list[Output]: ...
    async def tick(self, now: float) -> list[Output]: ...
    async def stop(self) -> None: ...
    def hold_commits(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]: ...
    def partitions_changed(self, partitions: set[tuple[str, int]]) -> None: ...
    def batch_limit(self) -> int | None: ...


class AgentBase:
    """No-op lifecycle hooks; subclasses set ``name``, ``inputs`` and write ``handle``."""

    name: str = "agent"
    inputs: tuple[TopicSpec, ...] = ()
    # True: replaying inputs already handled changes nothing downstream (outputs with deterministic ids), so
    # the runner may commit at most every ``kafka.commit_interval_ms``; False: after every batch (a sink that
    # counts, say, recounts at most one batch per crash)
    replay_safe: bool = False

    async def start(self) -> None:
        return None

    async def tick(self, now: float) -> list[Output]:
        return []

    async def stop(self) -> None:
        return None

    def hold_commits(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Lower the offsets about to be committed ((topic name, partition) -> next offset) while state built
        from earlier records is not yet in any output (e.g. open tracks). Default: commit everything."""
        return offsets

    def partitions_changed(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance revoked or assigned these (topic name, partition)s; their records will come again
        from the committed offset. Called from the consumer's rebalance, between batches or during one:
        defer the work to the next ``handle``. Default: nothing."""
        return None

    def batch_limit(self) -> int | None:
        """Most records the next batch may take (asked before each fetch), e.g. fewer while latency matters
        more than throughput. Default None: ``kafka.max_batch``."""
        return None


class PendingCommits:
    """Offsets acknowledged but not yet committed, per (topic name, partition): the next offset to read. Pure
    logic, monotonic seconds: ``due`` once ``interval_s`` has passed since the last ``take`` (0: always)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.offsets: dict[tuple[str, int], int] = {}
        self._taken_at = float("-inf")

    def add(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """A batch whose outputs the broker acknowledged (step 3): its offsets may be committed."""
        for r in records:
            tp = (r.topic, r.partition)
            self.offsets[tp] = max(self.offsets.get(tp, 0), r.offset + 1)

    def due(self, now: float) -> bool:
        return bool(self.offsets) and now - self._taken_at >= self.interval_s

    def take(self, now: float) -> dict[tuple[str, int], int]:
        """The offsets to commit now; pending is empty after."""
        offsets, self.offsets, self._taken_at = self.offsets, {}, now
        return offsets

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance moved ``partitions``: never commit what was read of them before it."""
        for tp in partitions:
            self.offsets.pop(tp, None)


class StageRunner:
    """Runs one agent in its consumer group until ``stop`` is set (a role). Scale by running more of them."""

    def __init__(self, agent: Agent, *, settings: Settings, producer: AsyncProducer, membership: Membership) -> None:
        self.agent = agent
        self.settings = settings
        self.producer = producer
        self.membership = membership
        self._by_topic = {f"{settings.kafka.topic_prefix}{spec.name}": spec for spec in agent.inputs}
        self._consumer: AIOKafkaConsumer | None = None
        self._pending = PendingCommits(settings.kafka.commit_interval_ms / 1000 if agent.replay_safe else 0.0)

    @property
    def name(self) -> str:
        return self.agent.name

    async def run(self, stop: asyncio.Event) -> None:
        name = self.agent.name
        await self.agent.start()
        group = group_id(self.settings, name)
        reporter = self.membership.reporter(name, group)
        consumer = self._consumer = make_consumer(self.settings, (), group, client_id=reporter.client_id)
        consumer.subscribe(list(self._by_topic), listener=_Moved(self.agent, self._pending))
        await consumer.start()
        metrics.HEALTHY.labels(name).set(1)
        log.info("stage %s consuming %s", name, ", ".join(self._by_topic))
        last_tick = time.monotonic()
        try:
            while not stop.is_set():
                limit = self.agent.batch_limit() or self.settings.kafka.max_batch
                records = await consumer.getmany(timeout_ms=200, max_records=limit)
                reporter.update(consumer.assignment())  # who owns which partitions, for `facestream ops status`
                flat = [r for batch in records.values() for r in batch]
                if flat:
                    await self._process(flat)
                elif self._pending.due(time.monotonic()):
                    await self._commit()  # a quiet input: what is acknowledged is committed now
                if time.monotonic() - last_tick >= TICK_SECONDS:
                    last_tick = time.monotonic()
                    await self._publish(await self.agent.tick(time.time()))
        finally:
            metrics.HEALTHY.labels(name).set(0)
            if self._pending.offsets:  # a stop: a successor starts where this stage's acknowledged outputs end
                try:
                    await self._commit()
                except Exception as exc:  # noqa: BLE001 - a stop goes on: the successor replays from the last commit
                    log.warning("stage %s: last commit failed at stop: %s", name, exc)
            await consumer.stop()  # leaves the group at once so partitions move to the others
            reporter.close()
            await self.agent.stop()
            log.info("stage %s stopped", name)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        name = self.agent.name
        metrics.MESSAGES_IN.labels(name).inc(len(records))
        metrics.BATCH_SIZE.labels(name).observe(len(records))
        now_ms = time.time() * 1000
        age = metrics.INPUT_AGE.labels(name)
        for record in records:  # how long each input waited between its producer and this stage
            age.observe(max(0.0, now_ms - record.timestamp) / 1000)
        batch, dead = self._decode(records)
        started = time.perf_counter()
        outputs = await self._handle(batch, dead) if batch else []
        metrics.HANDLE_SECONDS.labels(name).observe(time.perf_counter() - started)
        started = time.perf_counter()
        await self._publish(outputs + dead)
        self._pending.add(records)
        if self._pending.due(time.monotonic()):
            await self._commit()
        metrics.COMMIT_SECONDS.labels(name).observe(time.perf_counter() - started)

    def _decode(self, records: list[ConsumerRecord[bytes, bytes]]) -> tuple[list[Incoming], list[Output]]:
        batch: list[Incoming] = []
        dead: list[Output] = []
        for record in records:
            spec = self._by_topic[record.topic]
            key = record.key.decode(errors="replace") if record.key else None
            try:
                message = spec.decode(record.value)
            except SchemaError as exc:
                dead.append(self._dead_letter(record, key, str(exc)))
                continue
            batch.append(Incoming(spec, key, message, record.partition, record.offset, record.timestamp))
        return batch, dead

    async def _handle(self, batch: list[Incoming], dead: list[Output]) -> list[Output]:
        try:
            return await self.agent.handle(batch)
        except Exception:
            metrics.ERRORS.labels(self.agent.name).inc()
            log.exception("stage %s: batch of %d failed; retrying one by one", self.agent.name, len(batch))
        outputs: list[Output] = []
        for item in batch:
            try:
                outputs.extend(await self.agent.handle([item]))
            except Exception as exc:  # noqa: BLE001 - dead-lettered with its reason
                log.warning("stage %s: dead-lettering %s[%d]@%d: %s", self.agent.name, item.topic.name,
                            item.partition, item.offset, exc)
                dead.append(Output(DEAD_LETTER, self.agent.name, DeadLetter(
                    stage=self.agent.name, topic=item.topic.name, partition=item.partition,
                    offset=item.offset, key=item.key, reason=f"{type(exc).__name__}: {exc}",
                    payload=item.topic.encode(item.message),
                )))
        return outputs

    def _dead_letter(self, record: ConsumerRecord[bytes, bytes], key: str | None, reason: str) -> Output:
        log.warning("stage %s: undecodable record %s[%d]@%d: %s", self.agent.name, record.topic,
                    record.partition, record.offset, reason[:300])
        return Output(DEAD_LETTER, self.agent.name, DeadLetter(
            stage=self.agent.name, topic=record.topic, partition=record.partition, offset=record.offset,
            key=key, reason=reason[:2000], payload=record.value or b""))

    async def _publish(self, outputs: list[Output]) -> None:
        if not outputs:
            return
        await self.producer.send_all((o.topic, o.key, o.message) for o in outputs)
        for o in outputs:
            metrics.MESSAGES_OUT.labels(self.agent.name, o.topic.name).inc()
            if o.topic is DEAD_LETTER:
                metrics.DEAD_LETTERS.labels(self.agent.name).inc()

    async def _commit(self) -> None:
        """Commit the acknowledged offsets (``PendingCommits``), as far as the agent's ``hold_commits`` lets."""
        assert self._consumer is not None
        offsets = self.agent.hold_commits(self._pending.take(time.monotonic()))
        if not offsets:
            return
        try:
            await self._consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(off, "") for (t, p), off in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partition: its new owner replays from the last commit (duplicates, no loss).
            log.warning("stage %s: commit skipped after a rebalance: %s", self.agent.name, exc)


class _Moved(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the agent which partitions a rebalance moved (``Agent.partitions_changed``) and drops their
    uncommitted offsets (``PendingCommits.forget``)."""

    def __init__(self, agent: Agent, pending: PendingCommits) -> None:
        self.agent = agent
        self.pending = pending

    def _moved(self, partitions: set[TopicPartition]) -> None:
        moved = {(tp.topic, tp.partition) for tp in partitions}
        self.pending.forget(moved)
        self.agent.partitions_changed(moved)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._moved(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._moved(assigned)
