"""Counters stage: events -> counter-records topic + SQL.

Counter definitions live in SQL (``/v1/counters``) and are re-read every ``counters.refresh_s``. Per batch
the pure :class:`agents.counting.Counting` counts the events; the changed windows (and windows that became
final) are upserted into ``counter_records`` and published on ``counter-records`` (key = counter id),
acknowledged before the input offsets are committed. ``tick`` finalises windows of quiet live cameras.

Restart: windows still open (ending less than ``keep_windows`` intervals ago) are reloaded from SQL. The
batch in flight at a crash is counted again (at-least-once): a count can exceed the truth by at most one
input batch per crash.
"""

from __future__ import annotations

import logging
import time

from agents.counting import Counting
from agents.ports import CounterStore
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import CounterRecord, FaceEvent
from schemas.topics import COUNTER_RECORDS, EVENTS

log = logging.getLogger(__name__)


class CountersAgent(AgentBase):
    name = "counters"
    inputs = (EVENTS,)

    def __init__(self, *, settings: Settings, repo: CounterStore) -> None:
        self.settings = settings
        self.repo = repo
        self.counting = Counting(lateness_s=settings.counters.lateness_s)
        self._next_refresh = 0.0

    async def start(self) -> None:
        await self._refresh(time.time())
        counters = await self.repo.list_all()
        horizon = time.time() - self.counting.keep_windows * max((c.interval_s for c in counters), default=60)
        for record in await self.repo.open_records(horizon):
            self.counting.seed(record)

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        now = time.time()
        await self._refresh(now)
        for item in batch:
            if isinstance(item.message, FaceEvent):
                self.counting.add(item.message, now)
        return await self._publish(self.counting.updates(now))

    async def tick(self, now: float) -> list[Output]:
        await self._refresh(now)
        return await self._publish(self.counting.updates(now))

    async def _refresh(self, now: float) -> None:
        if now < self._next_refresh:
            return
        self.counting.set_counters(await self.repo.list_all())
        self._next_refresh = now + self.settings.counters.refresh_s

    async def _publish(self, records: list[CounterRecord]) -> list[Output]:
        if not records:
            return []
        await self.repo.save_records(records)
        return [Output(COUNTER_RECORDS, r.counter_id, r) for r in records]

