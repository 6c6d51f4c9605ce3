"""Episodes as the episodes stage publishes them (idempotent upserts); listing and acknowledgement for the API."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import (
    and_,
    delete,
    exists,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from connectors.sql import tables as core
from connectors.sql.attributes import EPISODE_COLUMNS, attribute_conditions, attribute_values
from connectors.sql.base import (
    NotFoundError,
    Paged,
    Row,
    insert_absent,
    keyset_page,
    upsert_statement,
)
from connectors.sql.tables import (
    episode_cameras,
    episode_events,
    episode_watch_lists,
    episodes,
)
from schemas.api import EpisodeOut
from schemas.attributes import AttributeFilters
from schemas.messages import EpisodeChanged


class EpisodeRepository:
    """Episodes as the episodes stage publishes them; listing and acknowledgement for the API."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, changes: Iterable[EpisodeChanged]) -> None:
        """Upsert episodes (latest state wins by ``event_count`` and ``closed``) and link their events."""
        now = time.time()
        async with self.engine.begin() as conn:
            for change in changes:
                ep, event_ids = change.episode, change.event_ids
                row = {"id": ep.episode_id, "camera_group": ep.camera_group, "video_id": ep.video_id,
                       "opened_at": ep.opened_at, "last_at": ep.last_at, "closed": ep.closed,
                       "close_reason": ep.close_reason, "event_count": ep.event_count, "matched": ep.matched,
                       "dossier_id": ep.dossier_id, "doc": ep.model_dump_json(), "acknowledged": False,
                       "updated_at": now, **attribute_values(ep.best_event, EPISODE_COLUMNS)}
                stmt = upsert_statement(conn, episodes).values(row)
                newer = or_(episodes.c.event_count < stmt.excluded.event_count,
                            and_(episodes.c.event_count == stmt.excluded.event_count, stmt.excluded.closed))
                keep = {k: getattr(stmt.excluded, k) for k in row if k not in ("id", "acknowledged")}
                await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=keep, where=newer))
                await insert_absent(conn, episode_events, [{"episode_id": ep.episode_id, "event_id": e}
                                                            for e in event_ids])
                await insert_absent(conn, episode_cameras, [{"episode_id": ep.episode_id, "camera_id": c}
                                                             for c in ep.camera_ids])
                await insert_absent(conn, episode_watch_lists, [{"episode_id": ep.episode_id, "watch_list_id": w}
                                                                 for w in ep.watch_list_ids])

    async def close_video(self, video_id: str, reason: str = "interrupted") -> int:
        """Close every open episode of one offline video (its file is gone: no end marker will come)."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(select(episodes.c.id, episodes.c.doc).where(
                episodes.c.video_id == video_id, episodes.c.closed.is_(False)))).all()
            for row in rows:
                doc = orjson.loads(row.doc)
                doc.update(closed=True, close_reason=reason)
                await conn.execute(update(episodes).where(episodes.c.id == row.id).values(
                    closed=True, close_reason=reason, doc=orjson.dumps(doc).decode(), updated_at=time.time()))
        return len(rows)

    async def delete_of_video(self, video_id: str) -> int:
        """Delete every episode of one uploaded video with its event, camera and watch-list links; returns how
        many."""
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(select(episodes.c.id).where(episodes.c.video_id == video_id)))
                       .scalars())
            for start in range(0, len(ids), 1000):
                chunk = ids[start:start + 1000]
                for links in (episode_events, episode_cameras, episode_watch_lists):
                    await conn.execute(delete(links).where(links.c.episode_id.in_(chunk)))
                await conn.execute(delete(episodes).where(episodes.c.id.in_(chunk)))
        return len(ids)

    async def get(self, episode_id: str) -> EpisodeOut:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(episodes).where(episodes.c.id == episode_id))).mappings().first()
            if row is None:
                raise NotFoundError(episode_id)
            ids = (await conn.execute(select(episode_events.c.event_id)
                                      .where(episode_events.c.episode_id == episode_id))).scalars().all()
        return EpisodeOut.of({**_episode_doc(row), "event_ids": sorted(ids)})

    async def list(
        self, *, closed: bool | None = None, camera_id: str | None = None, watch_list_id: str | None = None,
        dossier_id: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = 100, cursor: str | None = None, attributes: AttributeFilters | None = None,
    ) -> list[EpisodeOut]:
        """Newest first (by ``opened_at``); ``since``/``until`` bound the episode's time span overlap."""
        items, _ = await self.list_page(closed=closed, camera_id=camera_id, watch_list_id=watch_list_id,
                                        dossier_id=dossier_id, since=since, until=until, limit=limit, cursor=cursor,
                                        attributes=attributes)
        return items

    async def list_page(
        self, *, closed: bool | None = None, camera_id: str | None = None, watch_list_id: str | None = None,
        dossier_id: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = 100, cursor: str | None = None, attributes: AttributeFilters | None = None,
    ) -> Paged[EpisodeOut]:
        """One page, newest first, and the next page's cursor (None at the end). ``attributes`` filter on the
        episode's best event (gender, age, mask, emotion)."""
        e = episodes.c
        conds: list[ColumnElement[bool]] = []
        if closed is not None:
            conds.append(e.closed.is_(closed))
        if camera_id:
            conds.append(exists().where(and_(episode_cameras.c.episode_id == e.id,
                                             episode_cameras.c.camera_id == camera_id)))
        if watch_list_id:
            conds.append(exists().where(and_(episode_watch_lists.c.episode_id == e.id,
                                             episode_watch_lists.c.watch_list_id == watch_list_id)))
        if dossier_id:
            conds.append(e.dossier_id == dossier_id)
        if since is not None:
            conds.append(e.last_at >= since)
        if until is not None:
            conds.append(e.opened_at < until)
        if attributes is not None:
            conds += attribute_conditions(episodes, attributes)
        rows, nxt = await keyset_page(self.engine, select(episodes).where(and_(true(), *conds)), e.opened_at, e.id,
                                      limit, cursor, descending=True)
        return Paged([EpisodeOut.of(_episode_doc(r)) for r in rows], nxt)

    async def acknowledge(self, episode_id: str, by: str) -> EpisodeOut:
        """Acknowledge the episode and every event in it (the events table of the core store)."""
        now = time.time()
        async with self.engine.begin() as conn:
            res = await conn.execute(update(episodes).where(episodes.c.id == episode_id)
                                     .values(acknowledged=True, acknowledged_at=now, acknowledged_by=by))
            if res.rowcount == 0:
                raise NotFoundError(episode_id)
            ids = select(episode_events.c.event_id).where(episode_events.c.episode_id == episode_id)
            await conn.execute(update(core.events).where(core.events.c.id.in_(ids))
                               .values(acknowledged=True, acknowledged_at=now, acknowledged_by=by,
                                       episode_id=episode_id))
        return await self.get(episode_id)


def _episode_doc(row: Row) -> dict[str, Any]:
    """The stored Episode with the acknowledgement columns (``EpisodeOut.of`` turns it into the API view)."""
    doc = orjson.loads(row["doc"])
    doc.pop("schema_version", None)
    doc.update(acknowledged=bool(row["acknowledged"]), acknowledged_at=row["acknowledged_at"],
               acknowledged_by=row["acknowledged_by"])
    return doc
