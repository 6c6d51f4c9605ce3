"""Webhooks sink: events / episodes / counter records -> signed, batched, retried HTTP deliveries.

Two halves that never wait on each other:

1. :class:`WebhooksAgent` (consumer group ``webhooks``, inputs ``events``, ``episodes``,
   ``counter-records``): turns each message into a payload item (``agents/notify_rules.py``), applies the
   deduplication rules to events, and for every active webhook subscribed to the item's topic whose
   filters pass, inserts the item into that webhook's SQL outbox. That insert is all ``handle`` does, and
   the runner commits the input offsets only after it: an item is never lost between the broker and the
   outbox (at-least-once). The outbox is bounded per webhook (``webhooks.queue_max``): past it, the oldest
   items are dead-lettered as a delivery with error "queue overflow", so a dead receiver costs a bounded
   amount of storage and never blocks consumption.
2. :class:`Dispatcher`: one task per webhook takes up to ``batch_max`` items (after ``batch_linger_s``)
   into a *delivery* (a JSON array, recorded as pending with its body), POSTs it, and retries failures
   after ``backoff_base_s * 2**(attempt-1)`` seconds capped at ``backoff_max_s``, up to ``max_attempts``;
   then the delivery is marked ``dead``. Every attempt is recorded in the delivery log
   (``GET /v1/webhooks/{id}/deliveries``). Pending deliveries survive a restart and are resumed first;
   items keep their order per webhook.

Duplicates: an item replayed after a crash is the same outbox row (skipped), but a crash after a
successful POST and before it was recorded sends that delivery again: receivers drop duplicates by the
item ``id`` (or the ``webhook-id`` header). Run one instance of this role: dispatchers of several
instances would each send the same outbox items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agents.dedup import Deduplicator, DedupRules
from agents.notify_rules import Item, backoff_s, item_of, passes
from agents.ports import Similarity, WebhookOutbox
from connectors.sql.locks import NamedLocks
from connectors.sql.webhooks import WebhookRepository
from connectors.webhook_client import WebhookClient
from pipeline.settings import Settings, WebhookSettings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import FaceEvent, StreamEnd
from schemas.notify import OutboxItem, PendingDelivery, Webhook
from schemas.topics import COUNTER_RECORDS, EPISODES, EVENTS

log = logging.getLogger(__name__)


class WebhookBook:
    """The webhook definitions, re-read from SQL at most every ``refresh_s``."""

    def __init__(self, repo: WebhookOutbox, refresh_s: float) -> None:
        self.repo = repo
        self.refresh_s = refresh_s
        self.by_id: dict[str, Webhook] = {}
        self._next = 0.0

    async def refresh(self, force: bool = False) -> bool:
        """Re-read if due; returns whether it did."""
        if not force and time.monotonic() < self._next:
            return False
        self.by_id = {w.webhook_id: w for w in await self.repo.list_all()}
        self._next = time.monotonic() + self.refresh_s
        return True


class WebhooksAgent(AgentBase):
    name = "webhooks"
    inputs = (EVENTS, EPISODES, COUNTER_RECORDS)

    def __init__(self, *, settings: Settings, repo: WebhookOutbox, book: WebhookBook, similarity: Similarity,
                 wake: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.repo = repo
        self.book = book
        self.wake = wake or asyncio.Event()
        self.dedup = Deduplicator(similarity, DedupRules.from_settings(settings.dedup))
        self.overflowed = 0

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        await self.book.refresh()
        rows: list[OutboxItem] = []
        for incoming in batch:
            item = self._item(incoming.message)
            if item is None:
                continue
            body = item.body()
            for w in self.book.by_id.values():
                if w.active and item.topic in w.topics and passes(w.filters, item):
                    rows.append(OutboxItem(w.webhook_id, item.item_id, body))
        if rows:
            self.overflowed += await self.repo.enqueue(rows, self.settings.webhooks.queue_max)
            self.wake.set()
        return []

    def _item(self, message: object) -> Item | None:
        if isinstance(message, StreamEnd):
            if message.video_id is not None:
                self.dedup.forget_video(message.video_id)
            return None
        if isinstance(message, FaceEvent) and not self.dedup.offer(message).keep:
            return None
        return item_of(message, self.settings.api.media_url)


class Dispatcher:
    """Delivery tasks, one per active webhook (see the module docstring)."""

    def __init__(self, *, settings: WebhookSettings, repo: WebhookRepository, book: WebhookBook,
                 client: WebhookClient, wake: asyncio.Event, locks: NamedLocks | None = None) -> None:
        self.settings = settings
        self.repo = repo
        self.book = book
        self.client = client
        self.wake = wake
        self.locks = locks or NamedLocks(repo.engine)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kicks: dict[str, asyncio.Event] = {}

    @property
    def owned(self) -> frozenset[str]:
        """The webhooks this dispatcher delivers now."""
        return frozenset(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.book.refresh()
                if not await self.locks.alive():  # the store dropped our locks: others may own them now
                    await self._drop(list(self._tasks))
                await self._sync(stop)
                self.wake.clear()
                for kick in self._kicks.values():
                    kick.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=min(1.0, self.settings.refresh_s))
        finally:
            await self._drop(list(self._tasks))
            await self.locks.close()

    async def _sync(self, stop: asyncio.Event) -> None:
        active = {wid for wid, w in self.book.by_id.items() if w.active}
        await self._drop([wid for wid, task in self._tasks.items() if wid not in active or task.done()])
        for wid in sorted(active - set(self._tasks)):
            if not await self.locks.try_acquire(f"webhook:{wid}"):
                continue  # another dispatcher owns this webhook
            self._kicks[wid] = asyncio.Event()
            self._tasks[wid] = asyncio.create_task(self._worker(wid, stop), name=f"webhook-{wid}")

    async def _drop(self, webhook_ids: list[str]) -> None:
        """Stop delivering these webhooks: cancel their tasks, wait until they are done, then free them."""
        tasks = [self._tasks.pop(wid) for wid in webhook_ids]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for wid in webhook_ids:
            self._kicks.pop(wid, None)
            await self.locks.release(f"webhook:{wid}")

    async def _worker(self, webhook_id: str, stop: asyncio.Event) -> None:
        s = self.settings
        try:
            for pending in await self.repo.pending(webhook_id):
                await self._deliver(webhook_id, pending, stop)
            while not stop.is_set():
                taken = await self.repo.take_batch(webhook_id, s.batch_max, s.batch_linger_s)
                if taken is None:
                    kick = self._kicks[webhook_id]
                    kick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(kick.wait(), timeout=max(0.05, min(0.5, s.batch_linger_s)))
                    continue
                await self._deliver(webhook_id, taken, stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s: delivery task failed; restarting", webhook_id)
            await asyncio.sleep(1.0)

    async def _deliver(self, webhook_id: str, pending: PendingDelivery, stop: asyncio.Event) -> None:
        delivery, body = pending.delivery, pending.body
        attempts = delivery.attempts
        while not stop.is_set():
            webhook = self.book.by_id.get(webhook_id)
            if webhook is None:
                return  # deleted: its pending deliveries stay in the log
            limit = webhook.max_attempts or self.settings.max_attempts
            attempts += 1
            result = await self.client.post(webhook.url, body, webhook.secret, delivery.delivery_id)
            if result.ok:
                await self.repo.record_attempt(delivery.delivery_id, attempts, "delivered", result.http_status, None)
                return
            status = "dead" if attempts >= limit else "pending"
            await self.repo.record_attempt(delivery.delivery_id, attempts, status, result.http_status, result.error)
            if status == "dead":
                log.warning("webhook %s: delivery %s dead after %d attempts: %s", webhook_id,
                            delivery.delivery_id, attempts, result.error)
                return
            delay = backoff_s(attempts, self.settings.backoff_base_s, self.settings.backoff_max_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

