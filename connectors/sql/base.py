"""What every SQL repository shares: the store's errors, ids, keyset cursors, upserts and generic CRUD.

Lists are keyset-paginated: ``list_page(limit, cursor)`` returns a :class:`Paged` (``items``,
``next_cursor``) where the cursor is an opaque string (``InvalidCursorError`` when it cannot be decoded).
Unknown ids raise ``NotFoundError``, references to unknown ids ``ReferenceError_`` (all ``StoreError``).
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import orjson
from sqlalchemy import Table, and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

M = TypeVar("M")
Row = RowMapping  # a result row by column name
UrlPath = Callable[[str], str]  # media key -> the URL path serving it


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
                      descending: bool = False) -> Paged[Row]:
    """One page of ``query`` (a ``select``) in ``(order, key)`` order, and the cursor of the next page (None at
    the end). Rows are SQLAlchemy mappings."""
    after = _keyset_after(order, key, cursor, descending)
    if after is not None:
        query = query.where(after)
    ordering = (order.desc(), key.desc()) if descending else (order, key)
    async with engine.connect() as conn:
        rows = list((await conn.execute(query.order_by(*ordering).limit(limit + 1))).mappings().all())
    if len(rows) <= limit:
        return Paged(list(rows), None)
    last = rows[limit - 1]
    return Paged(list(rows[:limit]), encode_cursor([last[order.key], last[key.key]]))


class Paged(NamedTuple, Generic[M]):
    """One page of a listing and the cursor of the next (None at the end)."""

    items: list[M]
    next_cursor: str | None


class Crud(Generic[M]):
    """Get, list (by ``created_at``, then id), delete by id over one table whose rows map onto model ``M``.

    Subclasses set ``table`` and write ``_model(row)``; ``_before_delete`` / ``_after_delete`` refuse or
    cascade inside the deleting transaction."""

    table: Table

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _model(self, row: Row) -> M:
        raise NotImplementedError

    async def get(self, ident: str) -> M:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(self.table).where(self.table.c.id == ident))).mappings().first()
        if row is None:
            raise NotFoundError(ident)
        return self._model(row)

    async def list_all(self) -> list[M]:
        c = self.table.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(self.table).order_by(c.created_at, c.id))).mappings().all()
        return [self._model(r) for r in rows]

    async def list_page(self, limit: int, cursor: str | None = None) -> Paged[M]:
        c = self.table.c
        rows = await keyset_page(self.engine, select(self.table), c.created_at, c.id, limit, cursor)
        return Paged([self._model(r) for r in rows.items], rows.next_cursor)

    async def delete(self, ident: str) -> None:
        async with self.engine.begin() as conn:
            await self._before_delete(conn, ident)
            if (await conn.execute(delete(self.table).where(self.table.c.id == ident))).rowcount == 0:
                raise NotFoundError(ident)
            await self._after_delete(conn, ident)

    async def _before_delete(self, conn: AsyncConnection, ident: str) -> None:
        """Refuse (``ConflictError``) or cascade before a row is deleted."""

    async def _after_delete(self, conn: AsyncConnection, ident: str) -> None:
        """Clean up rows that hang off the deleted one."""


class RecordRepository(Crud[M]):
    """CRUD of a model stored whole in one row (counters, webhooks, Telegram rules): subclasses write
    ``_new(body)`` (the model of a created record, id and time set) and ``_row(model)`` (its row)."""

    def _new(self, body: Any) -> M:
        raise NotImplementedError

    def _row(self, model: M) -> dict[str, Any]:
        raise NotImplementedError

    async def create(self, body: Any) -> M:
        model = self._new(body)
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert().values(self._row(model)))
        return model

    async def update(self, ident: str, changes: dict[str, Any]) -> M:
        """Apply the set fields of a patch (``model_dump(exclude_unset=True)``), validated as a whole."""
        current: Any = await self.get(ident)
        model: M = type(current).model_validate({**current.model_dump(), **changes})
        async with self.engine.begin() as conn:
            await conn.execute(update(self.table).where(self.table.c.id == ident).values(self._row(model)))
        return model


async def exists_row(conn: AsyncConnection, table: Table, ident: str) -> bool:
    return (await conn.execute(select(table.c.id).where(table.c.id == ident))).first() is not None


def json_text(value: Any) -> str:
    """A JSON document for a TEXT column."""
    return orjson.dumps(value).decode()


async def insert_absent(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose primary key is not there yet (replays insert nothing twice)."""
    if rows:
        await conn.execute(upsert_statement(conn, table).on_conflict_do_nothing(), rows)
