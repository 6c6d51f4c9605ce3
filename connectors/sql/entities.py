"""Camera groups, cameras and watch lists: rows that map one-to-one onto their ``*Out`` model (shared CRUD,
``connectors.sql.base.Crud``), and the changelog messages the API publishes for them."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.sql import tables as t
from connectors.sql.base import (
    ConflictError,
    Crud,
    NotFoundError,
    ReferenceError_,
    Row,
    exists_row,
    new_id,
)
from schemas.api import (
    CameraGroupIn,
    CameraGroupOut,
    CameraIn,
    CameraOut,
    WatchListIn,
    WatchListOut,
)
from schemas.messages import (
    CameraChanged,
    GalleryChange,
    WatchListChanged,
)


class _EntityRepository(Crud[Any]):
    """CRUD over one table whose rows map one-to-one onto an ``*Out`` model (plus id and times): get, list
    and delete from ``Crud``; create and partial update here (with reference checks)."""

    out: type[Any]

    def _model(self, row: Row) -> Any:
        return self.out.model_validate(dict(row))

    async def _check_refs(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Raise ``ReferenceError_`` when ``values`` name unknown ids."""

    async def create(self, body: Any) -> Any:
        now = time.time()
        values = {**body.model_dump(), "id": new_id(), "created_at": now, "updated_at": now}
        async with self.engine.begin() as conn:
            await self._check_refs(conn, values)
            await conn.execute(insert(self.table).values(**values))
        return self.out.model_validate(values)

    async def update(self, ident: str, changes: dict[str, Any]) -> Any:
        """Apply the set fields of a patch (``model_dump(exclude_unset=True)``)."""
        async with self.engine.begin() as conn:
            await self._check_refs(conn, changes)
            result = await conn.execute(update(self.table).where(self.table.c.id == ident)
                                        .values(**changes, updated_at=time.time()))
            if result.rowcount == 0:
                raise NotFoundError(ident)
        return await self.get(ident)


class CameraGroupRepository(_EntityRepository):
    table = t.camera_groups
    out = CameraGroupOut

    async def create(self, body: CameraGroupIn) -> CameraGroupOut:  # type: ignore[override]
        return await super().create(body)

    async def _before_delete(self, conn: AsyncConnection, ident: str) -> None:
        if ident == "default":
            raise ConflictError("the default camera group cannot be deleted")
        used = await conn.execute(select(func.count()).select_from(t.cameras).where(t.cameras.c.camera_group == ident))
        if used.scalar_one():
            raise ConflictError("camera group still has cameras")


class CameraRepository(_EntityRepository):
    table = t.cameras
    out = CameraOut

    async def create(self, body: CameraIn) -> CameraOut:  # type: ignore[override]
        return await super().create(body)

    async def _check_refs(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        group = values.get("camera_group")
        if group is not None and not await exists_row(conn, t.camera_groups, group):
            raise ReferenceError_("camera_group", group)


def camera_changed(camera: CameraOut, deleted: bool = False) -> CameraChanged:
    """The ``cameras`` topic message for a stored camera."""
    return CameraChanged(camera_id=camera.id, name=camera.name, url=camera.url, camera_group=camera.camera_group,
                         active=camera.active, deleted=deleted, roi=camera.roi, best_face_mode=camera.best_face_mode,
                         min_face_size=camera.filters.min_face_size, min_quality=camera.filters.min_quality,
                         labels=dict(camera.labels))


class WatchListRepository(_EntityRepository):
    table = t.watch_lists
    out = WatchListOut

    async def create(self, body: WatchListIn) -> WatchListOut:  # type: ignore[override]
        return await super().create(body)

    async def _check_refs(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        for group in values.get("camera_groups") or []:
            if not await exists_row(conn, t.camera_groups, group):
                raise ReferenceError_("camera_groups", group)

    async def _before_delete(self, conn: AsyncConnection, ident: str) -> None:
        await conn.execute(delete(t.dossier_watch_lists).where(t.dossier_watch_lists.c.watch_list_id == ident))

    async def dossier_ids(self, ident: str) -> list[str]:
        """Dossiers on this watch list (to republish them after it is deleted)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.dossier_watch_lists.c.dossier_id)
                                      .where(t.dossier_watch_lists.c.watch_list_id == ident))
        return [r[0] for r in rows]


def watch_list_changed(wl: WatchListOut, deleted: bool = False) -> GalleryChange:
    return GalleryChange(watch_list=WatchListChanged(
        watch_list_id=wl.id, name=wl.name, active=wl.active, threshold=wl.threshold,
        camera_groups=list(wl.camera_groups), deleted=deleted))
