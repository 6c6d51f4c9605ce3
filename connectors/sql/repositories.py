"""Repositories over the SQL store: one class per entity, async, taking a migrated ``AsyncEngine``.

Lists are keyset-paginated: ``list_page(limit, cursor)`` returns ``(items, next_cursor)`` where the cursor
is an opaque string (``InvalidCursorError`` when it cannot be decoded). Unknown ids raise ``NotFoundError``,
references to unknown ids ``ReferenceError_`` (both subclass ``StoreError``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, and_, column, delete, func, insert, or_, select, table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from connectors.sql import tables as t
from connectors.sql.attributes import EVENT_COLUMNS, attribute_conditions, attribute_values
from schemas.api import (
    CameraGroupIn,
    CameraGroupOut,
    CameraIn,
    CameraOut,
    DossierFaceOut,
    DossierIn,
    DossierOut,
    EventFilters,
    EventOut,
    UserOut,
    VideoOut,
    WatchListIn,
    WatchListOut,
)
from schemas.attributes import summarise
from schemas.messages import (
    CameraChanged,
    DossierChanged,
    DossierFace,
    FaceEvent,
    GalleryChange,
    VideoProgress,
    WatchListChanged,
)

UrlPath = Callable[[str], str]


class StoreError(Exception):
    """Root of the SQL store's errors."""


class NotFoundError(StoreError, LookupError):
    """No row with that id."""


class ReferenceError_(StoreError, ValueError):
    """A field names an id that does not exist (``field``: which one)."""

    def __init__(self, field: str, value: str) -> None:
        super().__init__(f"{field}: unknown id {value!r}")
        self.field = field
        self.value = value


class ConflictError(StoreError):
    """The change would break a constraint (a name taken, an object still in use)."""


class InvalidCursorError(StoreError, ValueError):
    """The pagination cursor cannot be decoded."""


def new_id() -> str:
    return uuid.uuid4().hex


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int = 2) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidCursorError("invalid cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursorError("invalid cursor")
    return values


def _keyset_values(cursor: str) -> tuple[float, str]:
    """(sort value, id) of a keyset cursor; InvalidCursorError unless it holds a finite number and an id."""
    values = decode_cursor(cursor)
    value, ident = values
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidCursorError("invalid cursor")
    if not isinstance(ident, str) or len(ident) > 256:
        raise InvalidCursorError("invalid cursor")
    return float(value), ident


def upsert_statement(engine_or_conn: AsyncEngine | AsyncConnection, table: Table) -> Any:
    """A dialect-specific INSERT supporting ``on_conflict_do_update`` (SQLite and PostgreSQL)."""
    return (pg_insert if engine_or_conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _keyset_after(order: ColumnElement[Any], key: ColumnElement[Any], cursor: str | None, descending: bool
                  ) -> ColumnElement[bool] | None:
    if not cursor:
        return None
    value, ident = _keyset_values(cursor)
    if descending:
        return or_(order < value, and_(order == value, key < ident))
    return or_(order > value, and_(order == value, key > ident))


async def keyset_page(engine: AsyncEngine, query: Any, order: Any, key: Any, limit: int, cursor: str | None,
                      descending: bool = False) -> tuple[list[Any], str | None]:
    """One page of ``query`` (a ``select``) in ``(order, key)`` order, and the cursor of the next page (None at
    the end). Rows are SQLAlchemy mappings."""
    after = _keyset_after(order, key, cursor, descending)
    if after is not None:
        query = query.where(after)
    ordering = (order.desc(), key.desc()) if descending else (order, key)
    async with engine.connect() as conn:
        rows = list((await conn.execute(query.order_by(*ordering).limit(limit + 1))).mappings().all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor([last[order.key], last[key.key]])


# --- users and tokens ---------------------------------------------------------------------------------------

def hash_password(password: str) -> str:
    """scrypt (n=2**14, r=8, p=1), salted; ~50 ms: call it in an executor."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, username: str, password_hash: str, role: str) -> UserOut:
        row = {"id": new_id(), "username": username, "password_hash": password_hash, "role": role,
               "created_at": time.time()}
        async with self.engine.begin() as conn:
            if (await conn.execute(select(t.users.c.id).where(t.users.c.username == username))).first():
                raise ConflictError(f"user {username!r} exists")
            await conn.execute(insert(t.users).values(**row))
        return _user(row)

    async def by_username(self, username: str) -> tuple[UserOut, str] | None:
        """The user and its password hash, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.users).where(t.users.c.username == username))).first()
        return None if row is None else (_user(row._mapping), row.password_hash)

    async def list_all(self) -> list[UserOut]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.users).order_by(t.users.c.created_at))
        return [_user(r._mapping) for r in rows]

    async def list_page(self, limit: int, cursor: str | None = None) -> tuple[list[UserOut], str | None]:
        c = t.users.c
        rows, nxt = await keyset_page(self.engine, select(t.users), c.created_at, c.id, limit, cursor)
        return [_user(r) for r in rows], nxt

    async def delete(self, user_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.api_tokens).where(t.api_tokens.c.user_id == user_id))
            if (await conn.execute(delete(t.users).where(t.users.c.id == user_id))).rowcount == 0:
                raise NotFoundError(user_id)

    async def issue_token(self, user_id: str) -> str:
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(insert(t.api_tokens).values(
                token_hash=token_hash(token), user_id=user_id, created_at=time.time()))
        return token

    async def revoke_token(self, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.api_tokens).where(t.api_tokens.c.token_hash == token_hash(token)))

    async def user_for_token(self, token: str) -> UserOut | None:
        query = (select(t.users).join(t.api_tokens, t.api_tokens.c.user_id == t.users.c.id)
                 .where(t.api_tokens.c.token_hash == token_hash(token)))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _user(row._mapping)


def _user(row: Any) -> UserOut:
    return UserOut(id=row["id"], username=row["username"], role=row["role"], created_at=row["created_at"])


# --- simple entities ----------------------------------------------------------------------------------------

class _EntityRepository:
    """CRUD over one table whose rows map one-to-one onto an ``*Out`` model (plus id and times)."""

    table: Table
    out: type[Any]

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _to_out(self, row: Any) -> Any:
        return self.out.model_validate(dict(row))

    async def _check_refs(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Raise ``ReferenceError_`` when ``values`` name unknown ids."""

    async def create(self, body: Any) -> Any:
        now = time.time()
        values = {**body.model_dump(), "id": new_id(), "created_at": now, "updated_at": now}
        async with self.engine.begin() as conn:
            await self._check_refs(conn, values)
            await conn.execute(insert(self.table).values(**values))
        return self._to_out(values)

    async def get(self, ident: str) -> Any:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(self.table).where(self.table.c.id == ident))).first()
        if row is None:
            raise NotFoundError(ident)
        return self._to_out(row._mapping)

    async def update(self, ident: str, changes: dict[str, Any]) -> Any:
        """Apply the set fields of a patch (``model_dump(exclude_unset=True)``)."""
        async with self.engine.begin() as conn:
            await self._check_refs(conn, changes)
            result = await conn.execute(update(self.table).where(self.table.c.id == ident)
                                        .values(**changes, updated_at=time.time()))
            if result.rowcount == 0:
                raise NotFoundError(ident)
        return await self.get(ident)

    async def delete(self, ident: str) -> None:
        async with self.engine.begin() as conn:
            await self._before_delete(conn, ident)
            if (await conn.execute(delete(self.table).where(self.table.c.id == ident))).rowcount == 0:
                raise NotFoundError(ident)

    async def _before_delete(self, conn: AsyncConnection, ident: str) -> None:
        """Refuse (``ConflictError``) or cascade before a row is deleted."""

    async def list_page(self, limit: int, cursor: str | None = None) -> tuple[list[Any], str | None]:
        c = self.table.c
        query = select(self.table).order_by(c.created_at, c.id).limit(limit + 1)
        after = _keyset_after(c.created_at, c.id, cursor, descending=False)
        if after is not None:
            query = query.where(after)
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(query)]
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor([last["created_at"], last["id"]]) if last is not None else None
        return [self._to_out(r) for r in rows[:limit]], next_cursor

    async def list_all(self) -> list[Any]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(self.table).order_by(self.table.c.created_at, self.table.c.id))
        return [self._to_out(r._mapping) for r in rows]


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
        if group is not None and not await _exists(conn, t.camera_groups, group):
            raise ReferenceError_("camera_group", group)


def camera_changed(camera: CameraOut, deleted: bool = False) -> CameraChanged:
    """The ``cameras`` topic message for a stored camera."""
    return CameraChanged(camera_id=camera.id, name=camera.name, url=camera.url, camera_group=camera.camera_group,
                         active=camera.active, deleted=deleted, roi=camera.roi, best_face_mode=camera.best_face_mode,
                         min_face_size=camera.filters.min_face_size, min_quality=camera.filters.min_quality)


class WatchListRepository(_EntityRepository):
    table = t.watch_lists
    out = WatchListOut

    async def create(self, body: WatchListIn) -> WatchListOut:  # type: ignore[override]
        return await super().create(body)

    async def _check_refs(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        for group in values.get("camera_groups") or []:
            if not await _exists(conn, t.camera_groups, group):
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


async def _exists(conn: AsyncConnection, table: Table, ident: str) -> bool:
    return (await conn.execute(select(table.c.id).where(table.c.id == ident))).first() is not None


# --- dossiers -----------------------------------------------------------------------------------------------

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
            if not await _exists(conn, t.dossiers, ident):
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
                        ) -> tuple[list[DossierOut], str | None]:
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
        return items, next_cursor

    async def all_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            return [r[0] for r in await conn.execute(select(t.dossiers.c.id).order_by(t.dossiers.c.created_at))]

    async def add_face(self, dossier_id: str, face_id: str, image_key: str, quality: float,
                       bbox: Sequence[float], descriptor: Sequence[float]) -> DossierFaceOut:
        row = {"id": face_id, "dossier_id": dossier_id, "image_key": image_key, "quality": float(quality),
               "bbox": [float(v) for v in bbox], "descriptor": [float(v) for v in descriptor],
               "created_at": time.time()}
        async with self.engine.begin() as conn:
            if not await _exists(conn, t.dossiers, dossier_id):
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
            if not await _exists(conn, t.watch_lists, wl):
                raise ReferenceError_("watch_lists", wl)

    @staticmethod
    async def _set_watch_lists(conn: AsyncConnection, ident: str, wls: Iterable[str]) -> None:
        await conn.execute(delete(t.dossier_watch_lists).where(t.dossier_watch_lists.c.dossier_id == ident))
        unique = sorted(set(wls))
        if unique:
            await conn.execute(insert(t.dossier_watch_lists),
                               [{"dossier_id": ident, "watch_list_id": wl} for wl in unique])


# --- events -------------------------------------------------------------------------------------------------

_EVENT_FIELDS_FROM_MESSAGE = ("face_id", "camera_id", "camera_group", "track_id", "timestamp", "offset_s", "matched",
                              "dossier_id", "dossier_name", "confidence", "quality", "bbox", "attributes",
                              "frame_key", "thumbnail_key", "video_id")


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
                        ordering: str = "-timestamp") -> tuple[list[EventOut], str | None]:
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
        return items, next_cursor

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

    async def purge(self, matched_before: float, unmatched_before: float, limit: int = 1000
                    ) -> tuple[list[str], list[str]]:
        """Delete up to ``limit`` expired events; returns (event ids, media keys no longer referenced)."""
        c = t.events.c
        expired = or_(and_(c.matched.is_(True), c.timestamp < matched_before),
                      and_(c.matched.is_(False), c.timestamp < unmatched_before))
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(select(c.id, c.thumbnail_key, c.frame_key).where(expired).limit(limit)))
            ids = [r.id for r in rows]
            if not ids:
                return [], []
            await conn.execute(delete(t.event_watch_lists).where(t.event_watch_lists.c.event_id.in_(ids)))
            await conn.execute(delete(t.events).where(c.id.in_(ids)))
            keys = {k for r in rows for k in (r.thumbnail_key, r.frame_key) if k}
            keys -= await _still_referenced(conn, keys)
        return ids, sorted(keys)

    async def expire_frames(self, before: float, limit: int = 1000) -> tuple[int, list[str]]:
        """Forget the full frames of up to ``limit`` events older than ``before``; returns (events changed,
        frame keys no longer referenced)."""
        c = t.events.c
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(select(c.id, c.frame_key)
                                           .where(c.timestamp < before, c.frame_key.is_not(None)).limit(limit)))
            if not rows:
                return 0, []
            await conn.execute(update(t.events).where(c.id.in_([r.id for r in rows])).values(frame_key=None))
            keys = {r.frame_key for r in rows}
            keys -= await _still_referenced(conn, keys)
        return len(rows), sorted(keys)

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
            watch_lists=watch_lists, confidence=r["confidence"], quality=r["quality"], bbox=tuple(r["bbox"]),
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


async def _still_referenced(conn: AsyncConnection, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    c = t.events.c
    rows = await conn.execute(select(c.thumbnail_key, c.frame_key)
                              .where(or_(c.thumbnail_key.in_(keys), c.frame_key.in_(keys))))
    return {k for r in rows for k in (r.thumbnail_key, r.frame_key) if k in keys}


# --- videos -------------------------------------------------------------------------------------------------

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

    async def list_page(self, limit: int, cursor: str | None = None) -> tuple[list[VideoOut], str | None]:
        c = t.videos.c
        query = select(t.videos).order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
        after = _keyset_after(c.created_at, c.id, cursor, descending=True)
        if after is not None:
            query = query.where(after)
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in await conn.execute(query)]
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor([last["created_at"], last["id"]]) if last is not None else None
        return [_video(r) for r in rows[:limit]], next_cursor

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


def row_dict(row: Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)
