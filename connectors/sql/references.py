"""What a face reference (``detection:<id>``, ``event:<id>``, ``dossierface:<id>``) resolves to in the SQL store:
kept detections (written by ``POST /v1/detect``, expiring) and the stored faces of events and dossiers.

Descriptors are 128 float32 values, L2-normalised; boxes ``(x1, y1, x2, y2)`` in pixels of their image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.sql import tables as t

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class StoredFace:
    """A known face: its descriptor (None where the store has none: events keep theirs in Milvus), the media
    key of an image showing it, and its box in that image (None: the image is the face crop)."""

    descriptor: list[float] | None
    image_key: str | None
    bbox: BBox | None
    quality: float


@dataclass(frozen=True)
class Detection:
    id: str
    bbox: BBox
    quality: float
    descriptor: list[float]


class DetectionRepository:
    """Detections of ``POST /v1/detect``: one source image (``image_key``) per call, one row per face."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, batch_id: str, image_key: str, faces: Sequence[Detection], ttl_s: float) -> float:
        """Store the faces of one call; returns when they expire (UNIX s)."""
        now = time.time()
        rows = [{"id": f.id, "batch_id": batch_id, "image_key": image_key, "bbox": list(f.bbox),
                 "quality": f.quality, "descriptor": f.descriptor, "created_at": now, "expires_at": now + ttl_s}
                for f in faces]
        if rows:
            async with self.engine.begin() as conn:
                await conn.execute(insert(t.detections), rows)
        return now + ttl_s

    async def get(self, ident: str, now: float | None = None) -> StoredFace | None:
        """The detection, or None when unknown or expired."""
        d = t.detections.c
        q = select(t.detections).where(d.id == ident, d.expires_at > (time.time() if now is None else now))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        if row is None:
            return None
        return StoredFace(row["descriptor"], row["image_key"], tuple(row["bbox"]), row["quality"])  # type: ignore[arg-type]

    async def purge(self, now: float | None = None) -> list[str]:
        """Delete expired detections; returns the image keys no detection uses any more."""
        d = t.detections.c
        cutoff = time.time() if now is None else now
        async with self.engine.begin() as conn:
            expired = set((await conn.execute(select(d.image_key).where(d.expires_at <= cutoff))).scalars())
            if not expired:
                return []
            await conn.execute(delete(t.detections).where(d.expires_at <= cutoff))
            kept = set((await conn.execute(select(d.image_key).where(d.image_key.in_(expired)))).scalars())
        return sorted(expired - kept)


async def dossier_face(engine: AsyncEngine, face_id: str) -> StoredFace | None:
    f = t.dossier_faces.c
    async with engine.connect() as conn:
        row = (await conn.execute(select(t.dossier_faces).where(f.id == face_id))).mappings().first()
    if row is None:
        return None
    return StoredFace(row["descriptor"], row["image_key"], tuple(row["bbox"]), row["quality"])  # type: ignore[arg-type]


async def event_face(engine: AsyncEngine, event_id: str) -> StoredFace | None:
    """An event's face: its thumbnail (the face crop) and quality; the descriptor lives in Milvus."""
    e = t.events.c
    async with engine.connect() as conn:
        row = (await conn.execute(select(e.thumbnail_key, e.quality).where(e.id == event_id))).first()
    if row is None:
        return None
    return StoredFace(None, row.thumbnail_key, None, float(row.quality))
