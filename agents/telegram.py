"""Telegram sink: events -> Bot API ``sendPhoto`` per notification rule, one message per person per cooldown.

Like the webhooks sink, two halves that never wait on each other:

1. :class:`TelegramAgent` (consumer group ``telegram``, input ``events``): for every active rule
   (``/v1/telegram-rules``) whose filters pass, a message (caption: name, watch lists, camera, confidence,
   time; photo: the event's face thumbnail from the media store) is queued in the SQL outbox unless that
   chat already heard about that person (the dossier; for unmatched faces the camera track) less than
   ``telegram.cooldown_s`` before, in event time. Cooldowns live in SQL with the outbox, written before the
   input offsets are committed: at-least-once, and a replay queues nothing twice (message id =
   ``"{chat}:{event id}"``).
2. :class:`TelegramSender`: sends due messages; on 429 waits Telegram's ``retry_after``; on other
   failures retries with a doubling delay (capped at 100 s) up to ``telegram.max_attempts``, then marks the
   message ``failed``; permanent errors (400/403/404) fail at once.

Without ``telegram.bot_token`` the role idles (logged once). Both halves are built and run together by the
composition root (``ops/root.py``).

Scaling: any number of instances consume (the outbox and cooldowns are idempotent by message id); one of
them sends, the holder of the store lock ``telegram-sender`` (taken in ``ops/root.py``); the others take
over when it stops. Two instances may both queue one person within a cooldown when the person shows on two
cameras at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agents.notify_rules import backoff_s, caption, event_item, passes, person_key
from agents.ports import MediaReader, NameBook, TelegramOutbox
from connectors.sql.telegram import TelegramRepository
from connectors.telegram_client import TelegramClient
from pipeline.settings import Settings, TelegramSettings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import FaceEvent
from schemas.notify import OutboxMessage, QueuedMessage, TelegramRule
from schemas.topics import EVENTS

log = logging.getLogger(__name__)


class TelegramAgent(AgentBase):
    name = "telegram"
    inputs = (EVENTS,)

    def __init__(self, *, settings: Settings, repo: TelegramOutbox, watch_lists: NameBook, cameras: NameBook,
                 wake: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.repo = repo
        self.watch_lists = watch_lists
        self.cameras = cameras
        self.wake = wake or asyncio.Event()
        self.rules: list[TelegramRule] = []
        self.watch_list_names: dict[str, str] = {}
        self.camera_names: dict[str, str] = {}
        self._next_refresh = 0.0

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        await self._refresh()
        messages: list[QueuedMessage] = []
        for incoming in batch:
            e = incoming.message
            if not isinstance(e, FaceEvent):
                continue
            item = event_item(e)
            text = caption(e, self.watch_list_names, self.camera_names.get(e.camera_id))
            for rule in self.rules:
                if rule.active and passes(rule.filters, item):
                    messages.append(QueuedMessage(f"{rule.chat_id}:{e.event_id}", rule.chat_id, text,
                                                  e.thumbnail_key, person_key(e), e.timestamp))
        if messages and await self.repo.enqueue(messages, self.settings.telegram.cooldown_s):
            self.wake.set()
        return []

    async def _refresh(self) -> None:
        if time.monotonic() < self._next_refresh:
            return
        self.rules = await self.repo.list_all()
        with contextlib.suppress(Exception):  # names are cosmetic: ids stand in for them
            self.watch_list_names = {w.id: w.name for w in await self.watch_lists.list_all()}
            self.camera_names = {c.id: c.name for c in await self.cameras.list_all()}
        self._next_refresh = time.monotonic() + self.settings.telegram.refresh_s


class TelegramSender:
    """Sends the outbox (see the module docstring)."""

    def __init__(self, *, settings: TelegramSettings, repo: TelegramRepository, client: TelegramClient,
                 media: MediaReader, wake: asyncio.Event) -> None:
        self.settings = settings
        self.repo = repo
        self.client = client
        self.media = media
        self.wake = wake

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            sent_any = False
            for message in await self.repo.due():
                if stop.is_set():
                    return
                await self._send(message)
                sent_any = True
            if not sent_any:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=0.25)

    async def _send(self, m: OutboxMessage) -> None:
        photo = await self._thumbnail(m.thumbnail_key)
        result = await self.client.send_photo(m.chat_id, m.caption, photo)
        attempts = m.attempts + 1
        now = time.time()
        if result.ok:
            await self.repo.mark(m.id, "sent", attempts, now, None)
        elif result.retry_after is not None:  # rate limited: not the message's fault, wait as told
            await self.repo.mark(m.id, "pending", m.attempts, now + result.retry_after, result.error)
        elif result.permanent or attempts >= self.settings.max_attempts:
            log.warning("telegram: message %s failed after %d attempts: %s", m.id, attempts, result.error)
            await self.repo.mark(m.id, "failed", attempts, now, result.error)
        else:
            await self.repo.mark(m.id, "pending", attempts, now + backoff_s(attempts, 1.0), result.error)

    async def _thumbnail(self, key: str | None) -> bytes | None:
        if not key:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.media.get, key)
        except Exception:  # noqa: BLE001 - a missing image still deserves the text
            log.info("telegram: thumbnail %s unavailable; sending text", key)
            return None

