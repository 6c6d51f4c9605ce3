"""Retention: purge expired events with their vectors and images, and expired full frames.

Ages come from ``store.retention_matched_days``, ``retention_unmatched_days`` and ``retention_frames_days``.
Safe to run from several processes at once (every step is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from connectors.media import MediaStore
from connectors.sql.events import EventRepository
from connectors.vectors import VectorStore
from pipeline.settings import StoreSettings

log = logging.getLogger(__name__)
DAY = 86400.0


@dataclass(frozen=True)
class PurgeReport:
    events: int
    media: int
    frames: int


async def purge_expired(events: EventRepository, vectors: VectorStore, media: MediaStore,
                        settings: StoreSettings, now: float | None = None, batch: int = 1000) -> PurgeReport:
    """Delete events past their retention (rows, vectors, thumbnails and frames no event still uses), then
    forget full frames past ``retention_frames_days``. Loops in batches of ``batch`` until nothing is left."""
    now = time.time() if now is None else now
    loop = asyncio.get_running_loop()
    n_events = n_media = n_frames = 0
    while True:
        ids, keys = await events.purge(now - settings.retention_matched_days * DAY,
                                       now - settings.retention_unmatched_days * DAY, limit=batch)
        if not ids:
            break
        await vectors.delete_events(ids)
        await loop.run_in_executor(None, _delete_all, media, keys)
        n_events, n_media = n_events + len(ids), n_media + len(keys)
    while True:
        changed, keys = await events.expire_frames(now - settings.retention_frames_days * DAY, limit=batch)
        if not changed:
            break
        await loop.run_in_executor(None, _delete_all, media, keys)
        n_frames += len(keys)
    if n_events or n_frames:
        log.info("retention: purged %d events, %d images, %d frames", n_events, n_media, n_frames)
    return PurgeReport(n_events, n_media, n_frames)


def _delete_all(media: MediaStore, keys: list[str]) -> None:
    for key in keys:
        media.delete(key)
