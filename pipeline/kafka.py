"""Kafka clients: topic provisioning, an asyncio-friendly confluent-kafka producer, aiokafka consumers.

Producing uses confluent-kafka (idempotent, fast, works on Tansu and Apache Kafka); consuming uses aiokafka
(asyncio-native consumer groups). Every stage commits its input only after its outputs are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline import metrics
from pipeline.settings import Settings
from schemas.base import Message, SchemaError
from schemas.topics import TopicSpec

log = logging.getLogger(__name__)


def bootstrap(settings: Settings) -> str:
    if not settings.bootstrap_servers:
        raise RuntimeError("no bootstrap_servers: start the embedded broker first (facestream up) or set one")
    return settings.bootstrap_servers


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    return f"{settings.kafka.topic_prefix}{spec.name}"


def group_id(settings: Settings, role: str) -> str:
    return f"{settings.kafka.topic_prefix}{role}"


def _topic_config(settings: Settings, spec: TopicSpec) -> dict[str, str]:
    k = settings.kafka
    if spec.keep_forever:
        return {"retention.ms": "-1", "cleanup.policy": "compact"}
    retention = k.frames_retention_ms if spec.large else k.status_retention_ms if spec.short_lived else k.retention_ms
    return {"retention.ms": str(retention), "max.message.bytes": str(k.max_message_bytes)}


def provision_topics(settings: Settings, specs: Iterable[TopicSpec]) -> None:
    """Create missing topics with partitions, retention and message size from settings (blocking)."""
    admin = AdminClient({"bootstrap.servers": bootstrap(settings)})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(topic_name(settings, s), num_partitions=settings.kafka.partitions,
                 replication_factor=settings.kafka.replication_factor, config=_topic_config(settings, s))
        for s in specs if topic_name(settings, s) not in existing
    ]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=10).items():
        try:
            future.result()
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


class AsyncProducer:
    """confluent-kafka producer whose ``send`` returns an awaitable acknowledgement.

    A background thread serves delivery callbacks; acks resolve futures on the owning loop.
    """

    def __init__(self, settings: Settings, client_id: str = "facestream") -> None:
        self._settings = settings
        self._producer = Producer({
            "bootstrap.servers": bootstrap(settings),
            "client.id": client_id,
            "enable.idempotence": True,
            "linger.ms": settings.kafka.linger_ms,
            "message.max.bytes": settings.kafka.max_message_bytes,
            "compression.type": "none",
            "log.connection.close": False,  # Tansu and idle brokers close connections: not an error
        }, logger=logging.getLogger("librdkafka"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = True
        self._thread = threading.Thread(target=self._poll_forever, name="kafka-producer-poll", daemon=True)
        self._thread.start()
        metrics.RESOURCES_OPENED.labels("producer").inc()

    def _poll_forever(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    def send(self, spec: TopicSpec, key: str, message: Message | bytes) -> asyncio.Future[tuple[int, int]]:
        """Queue one message; the future resolves to (partition, offset) once the broker acknowledged it."""
        loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()
        value = message if isinstance(message, bytes) else spec.encode(message)

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                loop.call_soon_threadsafe(_resolve, future, (msg.partition(), msg.offset()), None)
            else:
                loop.call_soon_threadsafe(_resolve, future, None, KafkaException(err))

        while True:
            try:
                self._producer.produce(topic_name(self._settings, spec), value=value, key=key.encode(),
                                       on_delivery=delivered)
                return future
            except BufferError:  # local queue full: let the poll thread drain it
                self._producer.poll(0.05)

    async def send_all(self, items: Iterable[tuple[TopicSpec, str, Message | bytes]]) -> int:
        futures = [self.send(spec, key, msg) for spec, key, msg in items]
        if futures:
            await asyncio.gather(*futures)
        return len(futures)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, 10)
        self._running = False
        self._thread.join(timeout=2)
        del self._producer  # librdkafka disconnects when the handle goes, rather than retrying a stopped broker


def _resolve(future: asyncio.Future[Any], result: Any, error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def make_consumer(settings: Settings, specs: Iterable[TopicSpec], group: str | None, *,
                  fetch_max_wait_ms: int | None = None, **extra: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer; with a group it never auto-commits (the stage commits after acks). Its fetch
    wait is ``kafka.fetch_max_wait_ms`` unless given."""
    topics = [topic_name(settings, s) for s in specs] if group else []
    k = settings.kafka
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # Tansu misreports end offsets: "latest" is unreliable there
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
        max_partition_fetch_bytes=k.max_message_bytes,
        fetch_max_bytes=max(k.max_message_bytes, 52428800),
        max_poll_records=k.max_batch,
        fetch_max_wait_ms=k.fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms,
        **extra,
    )


async def replay_topic(
    settings: Settings, spec: TopicSpec, on_message: Callable[[Any], Awaitable[None] | None],
    stop: asyncio.Event, caught_up: asyncio.Event | None = None, *, table: bool = False,
) -> None:
    """Read every partition of a changelog topic from the start, without a group, until ``stop``.

    ``caught_up`` is set after the first fetch that returns nothing (Tansu misreports end offsets, so an
    idle fetch stands for "reached the end"). Undecodable records are logged and skipped. ``table``: an
    in-process table of a rarely changing topic, read with ``kafka.table_fetch_max_wait_ms``.
    """
    wait = settings.kafka.table_fetch_max_wait_ms if table else None
    consumer = make_consumer(settings, [], None, fetch_max_wait_ms=wait)
    await consumer.start()
    try:
        name = topic_name(settings, spec)
        partitions = consumer.partitions_for_topic(name) or await _wait_for_partitions(settings, name, stop)
        if not partitions:
            return  # stopped before the topic existed
        consumer.assign([TopicPartition(name, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=300)
            if not batches and caught_up is not None:
                caught_up.set()
            for records in batches.values():
                for record in records:
                    try:
                        message = spec.decode(record.value)
                    except SchemaError as exc:
                        log.warning("skipping undecodable record in %s: %s", name, exc)
                        continue
                    result = on_message(message)
                    if asyncio.iscoroutine(result):
                        await result
    finally:
        await consumer.stop()


async def _wait_for_partitions(settings: Settings, name: str, stop: asyncio.Event) -> set[int]:
    """The partitions of topic ``name`` once it exists (the consumer's metadata, taken at its start, did not have
    it), asked of the broker every 0.2 s; empty if ``stop`` is set first. Lists every topic rather than asking
    for this one, so a broker that creates topics on request does not create it."""
    def partitions() -> set[int]:
        topic = AdminClient({"bootstrap.servers": bootstrap(settings)}).list_topics(timeout=10).topics.get(name)
        return set(topic.partitions) if topic is not None and topic.error is None else set()

    while not stop.is_set():
        found = await asyncio.to_thread(partitions)
        if found:
            return found
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return set()


async def replay_to_end(settings: Settings, spec: TopicSpec, on_message: Callable[[Any], Awaitable[None] | None],
                        timeout_s: float) -> None:
    """Replay a changelog topic from the start until it is caught up (see :func:`replay_topic`), then stop.

    Raises RuntimeError when the end is not reached within ``timeout_s``; a replay failure is re-raised, so a
    caller never starts on partial state."""
    stop, caught_up = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(replay_topic(settings, spec, on_message, stop, caught_up))
    waiter = asyncio.create_task(caught_up.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        await task
    if not caught_up.is_set():
        raise RuntimeError(f"{spec.name} replay did not reach the end in {timeout_s:.0f} s")
