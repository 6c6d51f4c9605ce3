"""Async SQLAlchemy engine for the configured store and the versioned migrations runner.

- ``store.sql_url`` unset: SQLite file ``{data_dir}/facestream.db`` via aiosqlite (WAL, foreign keys on,
  30 s busy timeout so several roles in one machine can write).
- ``store.sql_url`` set: any SQLAlchemy async URL; ``postgresql://`` is rewritten to the asyncpg driver
  (``pip install 'facestream[postgres]'``).

Migrations: every ``NNNN_name.sql`` file in ``connectors/sql/migrations/`` is applied once, in numeric order,
each in its own transaction, and recorded in ``schema_migrations``. Statements in a file end with ``;`` at the
end of a line; ``--`` comment lines are ignored. Files must be portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pipeline import metrics
from pipeline.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
_PG_LOCK_KEY = 7_210_515  # advisory lock serialising migrations across processes on PostgreSQL
_locks: dict[str, asyncio.Lock] = {}


class MigrationError(RuntimeError):
    """A migration file is malformed or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: str  # four digits, e.g. "0001"
    name: str  # file name
    statements: tuple[str, ...]


def sql_url(settings: Settings) -> str:
    """The async SQLAlchemy URL for the settings (see the module docstring)."""
    url = settings.store.sql_url
    if not url:
        return f"sqlite+aiosqlite:///{(Path(settings.data_dir) / 'facestream.db').resolve()}"
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain):]
    return url


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine without migrations applied (see ``open_sql``)."""
    metrics.RESOURCES_OPENED.labels("sql").inc()
    url = sql_url(settings)
    if url.startswith("sqlite"):
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql+asyncpg"):
        try:
            import asyncpg  # noqa: F401
        except ImportError as exc:
            raise MigrationError("PostgreSQL needs asyncpg: pip install 'facestream[postgres]'") from exc
    return create_async_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def open_sql(settings: Settings) -> AsyncEngine:
    """A ready engine: created and migrated to the latest version. Dispose it when done."""
    engine = create_engine(settings)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in ``directory``, sorted by version; raises on duplicate versions."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        version = match.group(1)
        if version in found:
            raise MigrationError(f"two migrations share version {version}: {found[version].name}, {path.name}")
        found[version] = Migration(version, path.name, split_statements(path.read_text()))
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a migration script into statements (``;`` at a line end); drops ``--`` comment lines."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip().rstrip(";").strip()
            if statement:
                statements.append(statement)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return tuple(statements)


async def migrate(engine: AsyncEngine, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; returns the versions applied now. Safe to call concurrently."""
    lock = _locks.setdefault(str(engine.url), asyncio.Lock())
    async with lock:
        applied_now: list[str] = []
        async with engine.connect() as conn:
            # On PostgreSQL the advisory lock comes before any DDL, the migrations table's included: two
            # first starts racing on CREATE TABLE IF NOT EXISTS fail with a unique violation in pg_type.
            # SQLite serialises writers itself; a version recorded by another process is skipped (_apply).
            postgres = engine.dialect.name == "postgresql"
            if postgres:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
                await conn.commit()
            try:
                await _ensure_table(conn)
                for migration in load_migrations(directory):
                    if await _apply(conn, migration):
                        applied_now.append(migration.version)
            finally:
                if postgres:
                    await conn.rollback()
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                    await conn.commit()
        if applied_now:
            log.info("applied SQL migrations %s", ", ".join(applied_now))
        return applied_now


async def applied_versions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        await _ensure_table(conn)
        rows = await conn.execute(text("SELECT version FROM schema_migrations ORDER BY version"))
        return [r[0] for r in rows]


async def _ensure_table(conn: AsyncConnection) -> None:
    await conn.execute(text(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version VARCHAR(16) PRIMARY KEY, name VARCHAR(256) NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    ))
    await conn.commit()


async def _apply(conn: AsyncConnection, migration: Migration) -> bool:
    done = await conn.execute(
        text("SELECT 1 FROM schema_migrations WHERE version = :v"), {"v": migration.version})
    if done.first() is not None:
        await conn.commit()
        return False
    try:
        for statement in migration.statements:
            await conn.exec_driver_sql(statement)
        await conn.execute(
            text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
            {"v": migration.version, "n": migration.name, "t": time.time()},
        )
        await conn.commit()
    except IntegrityError:  # another process recorded it first (SQLite has no advisory lock)
        await conn.rollback()
        return False
    except Exception as exc:
        await conn.rollback()
        raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
    return True
