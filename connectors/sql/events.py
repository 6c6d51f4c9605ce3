"""Face events: idempotent upserts from the store sink, filtered keyset listing, acknowledgement, retention."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import and_, column, delete, func, insert, or_, select, table, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from connectors.sql import tables as t
from connectors.sql.attributes import EVENT_COLUMNS, attribute_conditions, attribute_values
from connectors.sql.base import (
    NotFoundError,
    Paged,
    UrlPath,
    _keyset_after,
    encode_cursor,
    upsert_statement,
)
from schemas.api import (
    EventFilters,
    EventOut,
)
from schemas.attributes import summarise
from schemas.messages import (
    FaceEvent,
)

_EVENT_FIELDS_FROM_MESSAGE = ("face_id", "camera_id", "camera_group", "track_id", "timestamp", "offset_s", "matched",
                              "dossier_id", "dossier_name", "confidence", "faces_used", "quality", "bbox", "attributes",
                              "frame_key", "thumbnail_key", "video_id")


class Purged(NamedTuple):
    """What a retention step removed: the events (deleted, or whose frame was forgotten) and the media keys
    no event references any more (to delete from the media store)."""

    event_ids: list[str]
    media_keys: list[str]


class EventRepository:
    """Face events. ``upsert_many`` is idempotent on ``event_id``: a redelivered event rewrites its row but
    keeps what was added after it was stored (acknowledgement, episode)."""

    def __init__(self, engine: AsyncEngine, url_path: UrlPath) -> None:
        self.engine = engine
        self.url_path = url_path

    async def upsert_many(self, events: Sequence[FaceEvent]) -> None:
        if not events:
            return
        latest = {e.event_id: e for e in events}  # a batch may hold the same event twice
        now = time.time()
        rows = [{"id": e.event_id, **{f: getattr(e, f) for f in _EVENT_FIELDS_FROM_MESSAGE},
                 **attribute_values(summarise(e.attributes), EVENT_COLUMNS),
                 "bbox": list(e.bbox), "acknowledged": False, "created_at": now} for e in latest.values()]
        async with self.engine.begin() as conn:
            stmt = upsert_statement(conn, t.events)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.events.c.id],
                set_={f: stmt.excluded[f] for f in (*_EVENT_FIELDS_FROM_MESSAGE, *EVENT_COLUMNS)})
            await conn.execute(stmt, rows)
            await conn.execute(delete(t.event_watch_lists).where(t.event_watch_lists.c.event_id.in_(list(latest))))
            links = [{"event_id": e.event_id, "watch_list_id": wl} for e in latest.values()
                     for wl in sorted(set(e.watch_list_ids))]
            if links:
                await conn.execute(insert(t.event_watch_lists), links)

    async def get(self, ident: str) -> EventOut:
        found = await self.get_many([ident])
        if not found:
            raise NotFoundError(ident)
        return found[0]

    async def get_many(self, ids: Sequence[str]) -> list[EventOut]:
        if not ids:
            return []
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(select(t.events).where(t.events.c.id.in_(list(ids))))]
            items = await self._assemble(conn, rows)
        by_id = {e.id: e for e in items}
        return [by_id[i] for i in ids if i in by_id]

    async def list_page(self, filters: EventFilters, limit: int, cursor: str | None = None,
                        ordering: str = "-timestamp") -> Paged[EventOut]:
        """One page in ``ordering`` (``timestamp`` / ``confidence``, ``-`` for descending; ties by id)."""
        c = t.events.c
        order = c.confidence if ordering.lstrip("-") == "confidence" else c.timestamp
        descending = ordering.startswith("-")
        query = select(t.events)
        for cond in event_conditions(filters):
            query = query.where(cond)
        after = _keyset_after(order, c.id, cursor, descending=descending)
        if after is not None:
            query = query.where(after)
        ordered = (order.desc(), c.id.desc()) if descending else (order, c.id)
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(query.order_by(*ordered).limit(limit + 1))]
            items = await self._assemble(conn, rows[:limit])
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor([last[order.key], last["id"]]) if last is not None else None
        return Paged(items, next_cursor)

    async def acknowledge_many(self, by: str, ids: Sequence[str] = (), filters: EventFilters | None = None
                               ) -> int:
        """Acknowledge the unacknowledged events among ``ids`` and/or matching ``filters``; returns how many."""
        c = t.events.c
        conds: list[ColumnElement[bool]] = [c.acknowledged.is_(False)]
        if ids:
            conds.append(c.id.in_(list(ids)))
        if filters is not None:
            conds.extend(event_conditions(filters))
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.events).where(and_(*conds)).values(
                acknowledged=True, acknowledged_at=time.time(), acknowledged_by=by))
        return int(result.rowcount or 0)

    async def acknowledge(self, ident: str, by: str) -> EventOut:
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.events).where(t.events.c.id == ident).values(
                acknowledged=True, acknowledged_at=time.time(), acknowledged_by=by))
            if result.rowcount == 0:
                raise NotFoundError(ident)
        return await self.get(ident)

    async def set_episode(self, event_ids: Sequence[str], episode_id: str) -> int:
        """Link events to an episode (for the episodes stage); returns rows changed."""
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.events).where(t.events.c.id.in_(list(event_ids)))
                                        .values(episode_id=episode_id))
        return int(result.rowcount)

    async def count(self, filters: EventFilters | None = None) -> int:
        query = select(func.count()).select_from(t.events)
        for cond in event_conditions(filters or EventFilters()):
            query = query.where(cond)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def purge(self, matched_before: float, unmatched_before: float, limit: int = 1000) -> Purged:
        """Delete up to ``limit`` expired events; returns (event ids, media keys no longer referenced)."""
        c = t.events.c
        expired = or_(and_(c.matched.is_(True), c.timestamp < matched_before),
                      and_(c.matched.is_(False), c.timestamp < unmatched_before))
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(select(c.id, c.thumbnail_key, c.frame_key).where(expired).limit(limit)))
            return await _delete_rows(conn, rows)

    async def delete_of_video(self, video_id: str, limit: int = 1000) -> Purged:
        """Delete up to ``limit`` events of one uploaded video; returns (event ids, media keys no longer
        referenced). Call until it returns no ids."""
        c = t.events.c
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(select(c.id, c.thumbnail_key, c.frame_key)
                                           .where(c.video_id == video_id).limit(limit)))
            return await _delete_rows(conn, rows)

    async def expire_frames(self, before: float, limit: int = 1000) -> Purged:
        """Forget the full frames of up to ``limit`` events older than ``before``; returns (events changed,
        frame keys no longer referenced)."""
        c = t.events.c
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(select(c.id, c.frame_key)
                                           .where(c.timestamp < before, c.frame_key.is_not(None)).limit(limit)))
            if not rows:
                return Purged([], [])
            await conn.execute(update(t.events).where(c.id.in_([r.id for r in rows])).values(frame_key=None))
            keys = {r.frame_key for r in rows}
            keys -= await _still_referenced(conn, keys)
        return Purged([r.id for r in rows], sorted(keys))

    async def _assemble(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[EventOut]:
        ids = [r["id"] for r in rows]
        wls: dict[str, list[str]] = {}
        if ids:
            c = t.event_watch_lists.c
            for r in await conn.execute(select(c.event_id, c.watch_list_id).where(c.event_id.in_(ids))
                                        .order_by(c.watch_list_id)):
                wls.setdefault(r.event_id, []).append(r.watch_list_id)
        episodes = await self._episodes_of(conn, ids)
        return [self._event(r, wls.get(r["id"], []), episodes.get(r["id"])) for r in rows]

    @staticmethod
    async def _episodes_of(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, str]:
        """event id -> episode id, from the episodes stage's links (it may store them before or after the
        store sink stores the event, so they are joined at read time)."""
        if not ids:
            return {}
        links = table("episode_events", column("event_id"), column("episode_id"))
        query = select(links.c.event_id, links.c.episode_id).where(links.c.event_id.in_(list(ids)))
        return {r.event_id: r.episode_id for r in await conn.execute(query)}

    def _event(self, r: Any, watch_lists: list[str], episode: str | None = None) -> EventOut:
        return EventOut(
            id=r["id"], camera=r["camera_id"], camera_group=r["camera_group"], timestamp=r["timestamp"],
            offset_s=r["offset_s"], matched=bool(r["matched"]), dossier=r["dossier_id"], dossier_name=r["dossier_name"],
            watch_lists=watch_lists, confidence=r["confidence"], faces_used=r["faces_used"], quality=r["quality"],
            bbox=tuple(r["bbox"]),
            attributes=r["attributes"], **{name: r[name] for name in EVENT_COLUMNS},
            episode=r["episode_id"] or episode, acknowledged=bool(r["acknowledged"]),
            acknowledged_at=r["acknowledged_at"], acknowledged_by=r["acknowledged_by"], video=r["video_id"],
            thumbnail=self.url_path(r["thumbnail_key"]) if r["thumbnail_key"] else None,
            frame=self.url_path(r["frame_key"]) if r["frame_key"] else None)


def event_conditions(f: EventFilters) -> list[ColumnElement[bool]]:
    """SQL conditions for the event filters (see ``EventFilters``)."""
    c = t.events.c
    conds: list[ColumnElement[bool]] = []
    if f.camera is not None:
        conds.append(c.camera_id == f.camera)
    if f.camera_group is not None:
        conds.append(c.camera_group == f.camera_group)
    if f.dossier is not None:
        conds.append(c.dossier_id == f.dossier)
    if f.matched is not None:
        conds.append(c.matched.is_(f.matched))
    if f.acknowledged is not None:
        conds.append(c.acknowledged.is_(f.acknowledged))
    if f.since is not None:
        conds.append(c.timestamp >= f.since)
    if f.until is not None:
        conds.append(c.timestamp < f.until)
    if f.min_confidence is not None:
        conds.append(c.confidence >= f.min_confidence)
    if f.watch_list is not None:
        conds.append(c.id.in_(select(t.event_watch_lists.c.event_id)
                              .where(t.event_watch_lists.c.watch_list_id == f.watch_list)))
    if f.video is not None:
        conds.append(c.video_id == f.video)
    if f.episode is not None:
        links = t.episode_events.c
        conds.append(or_(c.episode_id == f.episode,
                         c.id.in_(select(links.event_id).where(links.episode_id == f.episode))))
    return conds + attribute_conditions(t.events, f)


async def _delete_rows(conn: AsyncConnection, rows: Sequence[Any]) -> Purged:
    """Delete these events (rows of id, thumbnail_key, frame_key) with their watch-list links; returns them
    and the media keys no remaining event references."""
    ids = [r.id for r in rows]
    if not ids:
        return Purged([], [])
    await conn.execute(delete(t.event_watch_lists).where(t.event_watch_lists.c.event_id.in_(ids)))
    await conn.execute(delete(t.events).where(t.events.c.id.in_(ids)))
    keys = {k for r in rows for k in (r.thumbnail_key, r.frame_key) if k}
    keys -= await _still_referenced(conn, keys)
    return Purged(ids, sorted(keys))


async def _still_referenced(conn: AsyncConnection, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    c = t.events.c
    rows = await conn.execute(select(c.thumbnail_key, c.frame_key)
                              .where(or_(c.thumbnail_key.in_(keys), c.frame_key.in_(keys))))
    return {k for r in rows for k in (r.thumbnail_key, r.frame_key) if k in keys}
