"""Uploaded videos and their processing progress (from ``video-status``)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.sql import tables as t
from connectors.sql.base import (
    NotFoundError,
    Paged,
    _keyset_after,
    encode_cursor,
)
from schemas.api import (
    VideoOut,
)
from schemas.messages import (
    VideoProgress,
)


class VideoRepository:
    """Uploaded videos. Status moves queued -> processing -> done | failed; ``done`` is set only when the
    store sink has seen the file's ``StreamEnd`` (every event of the file stored)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, ident: str, filename: str, media_key: str, camera_id: str, camera_group: str,
                     started_at: float | None = None) -> VideoOut:
        now = time.time()
        async with self.engine.begin() as conn:
            await conn.execute(insert(t.videos).values(
                id=ident, filename=filename, media_key=media_key, camera_id=camera_id, camera_group=camera_group,
                status="queued", frames_done=0, frames_total=0, error=None, created_at=now, updated_at=now,
                started_at=started_at))
        return await self.get(ident)

    async def get(self, ident: str) -> VideoOut:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.videos).where(t.videos.c.id == ident))).first()
        if row is None:
            raise NotFoundError(ident)
        return _video(row._mapping)

    async def list_page(self, limit: int, cursor: str | None = None) -> Paged[VideoOut]:
        c = t.videos.c
        query = select(t.videos).order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
        after = _keyset_after(c.created_at, c.id, cursor, descending=True)
        if after is not None:
            query = query.where(after)
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(query)]
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor([last["created_at"], last["id"]]) if last is not None else None
        return Paged([_video(r) for r in rows[:limit]], next_cursor)

    async def delete(self, ident: str) -> str:
        """Delete the video's row; returns its media key (the caller deletes the file)."""
        async with self.engine.begin() as conn:
            key = (await conn.execute(select(t.videos.c.media_key).where(t.videos.c.id == ident))).scalar()
            if key is None:
                raise NotFoundError(ident)
            await conn.execute(delete(t.videos).where(t.videos.c.id == ident))
        return str(key)

    async def apply_progress(self, p: VideoProgress) -> bool:
        """Record decoder progress. A decoder ``done`` means decoded, not stored: it stays ``processing``
        until ``mark_done``. Terminal states are never left. Returns whether a row changed."""
        status = "processing" if p.status == "done" else p.status
        c = t.videos.c
        values: dict[str, Any] = {"status": status, "frames_done": p.frames_done, "updated_at": time.time()}
        if p.frames_total:
            values["frames_total"] = p.frames_total
        if p.error:
            values["error"] = p.error
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.videos).where(c.id == p.video_id, c.status.not_in(("done", "failed")))
                                        .values(**values))
        return bool(result.rowcount)

    async def unfinished(self) -> list[dict[str, Any]]:
        """Videos still ``queued`` or ``processing`` (id, media_key, camera_id, camera_group, created_at,
        started_at)."""
        c = t.videos.c
        query = select(c.id, c.media_key, c.camera_id, c.camera_group, c.created_at, c.started_at).where(
            c.status.in_(("queued", "processing"))).order_by(c.created_at)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def fail(self, ident: str, reason: str) -> bool:
        """Mark an unfinished video ``failed`` with ``reason``; terminal states are never left."""
        c = t.videos.c
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.videos).where(c.id == ident, c.status.not_in(("done", "failed")))
                                        .values(status="failed", error=reason, updated_at=time.time()))
        return bool(result.rowcount)

    async def mark_done(self, ident: str, frames_total: int) -> bool:
        c = t.videos.c
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(c.frames_total, c.status).where(c.id == ident))).first()
            if row is None or row.status == "failed":
                return False
            total = max(int(row.frames_total), int(frames_total))
            await conn.execute(update(t.videos).where(c.id == ident).values(
                status="done", frames_total=total, frames_done=total, updated_at=time.time()))
        return True


def _video(r: Any) -> VideoOut:
    total, done = int(r["frames_total"]), int(r["frames_done"])
    progress = 1.0 if r["status"] == "done" else (min(1.0, done / total) if total else 0.0)
    return VideoOut(id=r["id"], filename=r["filename"], camera_id=r["camera_id"], camera_group=r["camera_group"],
                    status=r["status"], progress=progress, frames_done=done, frames_total=total, error=r["error"],
                    created_at=r["created_at"], updated_at=r["updated_at"])
