"""Who owns which partitions, and how often each role restarted: the worker side of ``facestream ops status``.

The embedded broker (Tansu) returns neither client hosts nor assignments from DescribeGroups, so every stage
worker publishes its partitions to the ``stage-members`` topic (``MemberReport``, keyed by client id) when
they change and every ``REPORT_EVERY_S``; the report also carries the role's restart count in this process.
One :class:`Membership` per process (built by the composition root on the process's one producer) hands out
an :class:`AssignmentReporter` per stage worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Protocol

from pipeline import metrics
from pipeline.kafka import AsyncProducer
from schemas.messages import MemberReport
from schemas.topics import STAGE_MEMBERS

log = logging.getLogger(__name__)

REPORT_EVERY_S = 30.0


class HasTopicPartition(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...


def member_client_id(role: str) -> str:
    """The client id a stage worker uses: ``{role}@{host}:{pid}`` (unique per process, readable)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


class Membership:
    """The process's membership reporting: one producer for every reporter, restart counts per role."""

    def __init__(self, producer: AsyncProducer) -> None:
        self.producer = producer
        self.restarts: dict[str, int] = {}

    def reporter(self, role: str, group: str) -> AssignmentReporter:
        return AssignmentReporter(self, role, group, member_client_id(role))

    def restarted(self, role: str) -> int:
        """Count a restart of ``role`` (logged by the supervisor); returns the new count."""
        self.restarts[role] = self.restarts.get(role, 0) + 1
        metrics.ROLE_RESTARTS.labels(role).inc()
        return self.restarts[role]

    def publish(self, report: MemberReport) -> None:
        """Send without waiting; a failed send is logged (the next periodic report repeats it)."""
        future = self.producer.send(STAGE_MEMBERS, report.client_id, report)
        future.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[tuple[int, int]]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("member report not delivered: %s", future.exception())


class AssignmentReporter:
    """Publishes one worker's partitions when they change and every ``REPORT_EVERY_S``.

    Call ``update(consumer.assignment())`` from the worker's loop (cheap when nothing changed) and ``close()``
    on shutdown (publishes an empty assignment). Never blocks.
    """

    def __init__(self, membership: Membership, role: str, group: str, client_id: str) -> None:
        self._membership = membership
        self._role = role
        self._group = group
        self.client_id = client_id
        self._last: tuple[tuple[str, int], ...] | None = None
        self._sent_at = 0.0

    def update(self, assignment: Iterable[HasTopicPartition], now: float | None = None) -> bool:
        """Publish if the assignment changed or the last report is old; returns whether it published."""
        now = time.time() if now is None else now
        parts = tuple(sorted((tp.topic, tp.partition) for tp in assignment))
        if parts == self._last and now - self._sent_at < REPORT_EVERY_S:
            return False
        self._membership.publish(MemberReport(
            group=self._group, client_id=self.client_id, host=socket.gethostname(), pid=os.getpid(),
            partitions=list(parts), timestamp=now, restarts=self._membership.restarts.get(self._role, 0)))
        self._last, self._sent_at = parts, now
        return True

    def close(self) -> None:
        self.update((), now=time.time() + REPORT_EVERY_S)
