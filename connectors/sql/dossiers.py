"""Dossiers (people), their watch lists and enrolled faces; the gallery state the matcher replays."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.sql import tables as t
from connectors.sql.base import (
    NotFoundError,
    Paged,
    ReferenceError_,
    UrlPath,
    _keyset_after,
    encode_cursor,
    exists_row,
    new_id,
)
from schemas.api import (
    DossierFaceOut,
    DossierIn,
    DossierOut,
)
from schemas.messages import (
    DossierChanged,
    DossierFace,
)


class DossierRepository:
    """Dossiers with their watch lists and enrolled faces (descriptors kept here too, for the gallery)."""

    def __init__(self, engine: AsyncEngine, url_path: UrlPath) -> None:
        self.engine = engine
        self.url_path = url_path

    async def create(self, body: DossierIn) -> DossierOut:
        now = time.time()
        ident = new_id()
        values = body.model_dump(exclude={"watch_lists"})
        async with self.engine.begin() as conn:
            await self._check_watch_lists(conn, body.watch_lists)
            await conn.execute(insert(t.dossiers).values(**values, id=ident, created_at=now, updated_at=now))
            await self._set_watch_lists(conn, ident, body.watch_lists)
        return await self.get(ident)

    async def get(self, ident: str) -> DossierOut:
        found = await self.get_many([ident])
        if not found:
            raise NotFoundError(ident)
        return found[0]

    async def get_many(self, ids: Sequence[str]) -> list[DossierOut]:
        """Dossiers with these ids (unknown ones skipped), in the order given."""
        if not ids:
            return []
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(select(t.dossiers).where(t.dossiers.c.id.in_(ids)))]
            full = await self._assemble(conn, rows)
        by_id = {d.id: d for d in full}
        return [by_id[i] for i in ids if i in by_id]

    async def update(self, ident: str, changes: dict[str, Any]) -> DossierOut:
        wls = changes.pop("watch_lists", None)
        async with self.engine.begin() as conn:
            if not await exists_row(conn, t.dossiers, ident):
                raise NotFoundError(ident)
            if wls is not None:
                await self._check_watch_lists(conn, wls)
                await self._set_watch_lists(conn, ident, wls)
            await conn.execute(update(t.dossiers).where(t.dossiers.c.id == ident)
                               .values(**changes, updated_at=time.time()))
        return await self.get(ident)

    async def delete(self, ident: str) -> list[str]:
        """Delete the dossier; returns the media keys of its photos (for the caller to delete)."""
        async with self.engine.begin() as conn:
            keys = [r[0] for r in await conn.execute(
                select(t.dossier_faces.c.image_key).where(t.dossier_faces.c.dossier_id == ident))]
            await conn.execute(delete(t.dossier_faces).where(t.dossier_faces.c.dossier_id == ident))
            await conn.execute(delete(t.dossier_watch_lists).where(t.dossier_watch_lists.c.dossier_id == ident))
            if (await conn.execute(delete(t.dossiers).where(t.dossiers.c.id == ident))).rowcount == 0:
                raise NotFoundError(ident)
        return keys

    async def list_page(self, limit: int, cursor: str | None = None, watch_list: str | None = None
                        ) -> Paged[DossierOut]:
        c = t.dossiers.c
        query = select(t.dossiers).order_by(c.created_at, c.id).limit(limit + 1)
        after = _keyset_after(c.created_at, c.id, cursor, descending=False)
        if after is not None:
            query = query.where(after)
        if watch_list:
            query = query.where(c.id.in_(select(t.dossier_watch_lists.c.dossier_id)
                                         .where(t.dossier_watch_lists.c.watch_list_id == watch_list)))
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(query)]
            items = await self._assemble(conn, rows[:limit])
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor([last["created_at"], last["id"]]) if last is not None else None
        return Paged(items, next_cursor)

    async def all_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            return [r[0] for r in await conn.execute(select(t.dossiers.c.id).order_by(t.dossiers.c.created_at))]

    async def add_face(self, dossier_id: str, face_id: str, image_key: str, quality: float,
                       bbox: Sequence[float], descriptor: Sequence[float]) -> DossierFaceOut:
        row = {"id": face_id, "dossier_id": dossier_id, "image_key": image_key, "quality": float(quality),
               "bbox": [float(v) for v in bbox], "descriptor": [float(v) for v in descriptor],
               "created_at": time.time()}
        async with self.engine.begin() as conn:
            if not await exists_row(conn, t.dossiers, dossier_id):
                raise NotFoundError(dossier_id)
            await conn.execute(insert(t.dossier_faces).values(**row))
            await conn.execute(update(t.dossiers).where(t.dossiers.c.id == dossier_id).values(updated_at=time.time()))
        return self._face(row)

    async def delete_face(self, dossier_id: str, face_id: str) -> str:
        """Remove one enrolled face; returns its media key."""
        c = t.dossier_faces.c
        async with self.engine.begin() as conn:
            key = (await conn.execute(select(c.image_key).where(c.id == face_id, c.dossier_id == dossier_id))).first()
            if key is None:
                raise NotFoundError(face_id)
            await conn.execute(delete(t.dossier_faces).where(c.id == face_id))
            await conn.execute(update(t.dossiers).where(t.dossiers.c.id == dossier_id).values(updated_at=time.time()))
        return str(key[0])

    async def gallery_state(self, ident: str) -> DossierChanged:
        """The full state of a dossier for ``gallery-changes`` (``deleted`` when it no longer exists)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.dossiers).where(t.dossiers.c.id == ident))).first()
            if row is None:
                return DossierChanged(dossier_id=ident, deleted=True)
            wls = await self._watch_lists_of(conn, [ident])
            faces = await conn.execute(select(t.dossier_faces.c.id, t.dossier_faces.c.descriptor)
                                       .where(t.dossier_faces.c.dossier_id == ident)
                                       .order_by(t.dossier_faces.c.created_at))
            face_list = [DossierFace(face_id=f.id, descriptor=f.descriptor) for f in faces]
        return DossierChanged(dossier_id=ident, name=row.name, active=bool(row.active),
                              watch_list_ids=wls.get(ident, []), faces=face_list)

    async def _assemble(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[DossierOut]:
        ids = [r["id"] for r in rows]
        if not ids:
            return []
        wls = await self._watch_lists_of(conn, ids)
        faces: dict[str, list[DossierFaceOut]] = {}
        fc = t.dossier_faces.c
        query = (select(fc.id, fc.dossier_id, fc.image_key, fc.quality, fc.bbox, fc.created_at)
                 .where(fc.dossier_id.in_(ids)).order_by(fc.created_at))
        for f in await conn.execute(query):
            faces.setdefault(f.dossier_id, []).append(self._face(f._mapping))
        return [DossierOut(id=r["id"], name=r["name"], comment=r["comment"], meta=r["meta"], active=bool(r["active"]),
                           watch_lists=wls.get(r["id"], []), faces=faces.get(r["id"], []),
                           created_at=r["created_at"], updated_at=r["updated_at"]) for r in rows]

    def _face(self, row: Any) -> DossierFaceOut:
        return DossierFaceOut(id=row["id"], dossier_id=row["dossier_id"], image=self.url_path(row["image_key"]),
                              quality=row["quality"], bbox=tuple(row["bbox"]), created_at=row["created_at"])

    @staticmethod
    async def _watch_lists_of(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, list[str]]:
        c = t.dossier_watch_lists.c
        out: dict[str, list[str]] = {}
        for r in await conn.execute(select(c.dossier_id, c.watch_list_id).where(c.dossier_id.in_(ids))
                                    .order_by(c.watch_list_id)):
            out.setdefault(r.dossier_id, []).append(r.watch_list_id)
        return out

    @staticmethod
    async def _check_watch_lists(conn: AsyncConnection, wls: Iterable[str]) -> None:
        for wl in wls:
            if not await exists_row(conn, t.watch_lists, wl):
                raise ReferenceError_("watch_lists", wl)

    @staticmethod
    async def _set_watch_lists(conn: AsyncConnection, ident: str, wls: Iterable[str]) -> None:
        await conn.execute(delete(t.dossier_watch_lists).where(t.dossier_watch_lists.c.dossier_id == ident))
        unique = sorted(set(wls))
        if unique:
            await conn.execute(insert(t.dossier_watch_lists),
                               [{"dossier_id": ident, "watch_list_id": wl} for wl in unique])
