"""Store sink: events -> SQL rows + Milvus ``event_faces`` vectors; video-status -> video progress.

Idempotent: an event is upserted on its ``event_id`` (a redelivered batch rewrites the same rows and vectors).
A ``StreamEnd`` carrying a ``video_id`` marks that video ``done``: every event of the file came before it on
the same partition, so they are all stored by then. Images are already in the media store (the detector
writes them). Every ``RETENTION_INTERVAL_S`` the sink runs the injected retention pass (expired events,
vectors and images) in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agents.ports import EventStore, EventVectors, Retention, VideoStore
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import FaceEvent, StreamEnd, VideoProgress
from schemas.topics import EVENTS, VIDEO_STATUS

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 600.0
FIRST_PURGE_AFTER_S = 30.0


class StoreSink(AgentBase):
    name = "store"
    inputs = (EVENTS, VIDEO_STATUS)

    def __init__(self, *, events: EventStore, vectors: EventVectors, videos: VideoStore,
                 retention: Retention) -> None:
        self.events = events
        self.vectors = vectors
        self.videos = videos
        self.retention = retention
        self._next_purge = time.time() + FIRST_PURGE_AFTER_S
        self._purge: asyncio.Task[None] | None = None

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        """Store the batch's events (SQL, then vectors), then apply progress and end markers in order."""
        events = [m.message for m in batch if isinstance(m.message, FaceEvent)]
        if events:
            await self.events.upsert_many(events)
            await self.vectors.upsert_events(events)
        for item in batch:
            message = item.message
            if isinstance(message, VideoProgress):
                await self.videos.apply_progress(message)
            elif isinstance(message, StreamEnd) and message.video_id:
                await self.videos.mark_done(message.video_id, message.frames_total)
                log.info("video %s stored: done", message.video_id)
        return []

    async def tick(self, now: float) -> list[Output]:
        if now >= self._next_purge and (self._purge is None or self._purge.done()):
            self._next_purge = now + RETENTION_INTERVAL_S
            self._purge = asyncio.create_task(self._run_purge(), name="store-retention")
        return []

    async def _run_purge(self) -> None:
        try:
            await self.retention()
        except Exception:  # retention is retried on the next interval; the sink keeps storing
            log.exception("retention purge failed")

    async def stop(self) -> None:
        if self._purge is not None:
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._purge
