"""Store sink: events -> SQL rows + Milvus ``event_faces`` vectors; video-status -> video progress.

Idempotent: an event is upserted on its ``event_id`` (a redelivered batch rewrites the same rows and vectors).
A ``StreamEnd`` carrying a ``video_id`` marks that video ``done``: every event of the file came before it on
the same partition, so they are all stored by then. Images are already in the media store (the detector
writes them). Every ``retention_interval_s`` the sink purges expired events, vectors and images in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.media import MediaStore, open_media_store
from connectors.sql.engine import open_sql
from connectors.sql.repositories import EventRepository, VideoRepository
from connectors.sql.retention import purge_expired
from connectors.vectors import VectorStore, open_vectors
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import FaceEvent, StreamEnd, VideoProgress
from schemas.topics import EVENTS, VIDEO_STATUS

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 600.0
FIRST_PURGE_AFTER_S = 30.0


class StoreSink(AgentBase):
    name = "store"
    inputs = (EVENTS, VIDEO_STATUS)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.vectors: VectorStore | None = None
        self.media: MediaStore | None = None
        self.events: EventRepository | None = None
        self.videos: VideoRepository | None = None
        self._next_purge = 0.0
        self._purge: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.engine = await open_sql(self.settings)
        self.vectors = await open_vectors(self.settings)
        self.media = await asyncio.get_running_loop().run_in_executor(None, open_media_store, self.settings)
        self.events = EventRepository(self.engine, self.media.url_path)
        self.videos = VideoRepository(self.engine)
        self._next_purge = time.time() + FIRST_PURGE_AFTER_S

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        """Store the batch's events (SQL, then vectors), then apply progress and end markers in order."""
        assert self.events and self.vectors and self.videos, "start() first"
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
        assert self.events and self.vectors and self.media
        try:
            await purge_expired(self.events, self.vectors, self.media, self.settings.store)
        except Exception:  # retention is retried on the next interval; the sink keeps storing
            log.exception("retention purge failed")

    async def stop(self) -> None:
        if self._purge is not None:
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._purge
        if self.vectors is not None:
            await self.vectors.close()
        if self.engine is not None:
            await self.engine.dispose()


def build(settings: Settings) -> StoreSink:
    """Role factory (``pipeline.roles``: ``store``)."""
    return StoreSink(settings)
