"""The migrated schema equals the declared one (connectors/sql/tables.py): every table, column, type,
nullability and primary key. A migration and its declaration change together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from connectors.sql.engine import open_sql
from connectors.sql.tables import metadata
from pipeline.settings import Settings

BOOKKEEPING = {"schema_migrations"}


def _kind(t: TypeEngine[Any], dialect: Any) -> str:
    """A type as the database stores it, in portable terms: VARCHAR(n), TEXT, DOUBLE, BIGINT, BOOLEAN."""
    name = t.compile(dialect=dialect).upper()
    if name.startswith(("FLOAT", "DOUBLE", "REAL")):
        return "DOUBLE"
    if name in ("INTEGER", "BIGINT"):
        return "BIGINT"
    return name


def _reflect(conn: Connection) -> dict[str, dict[str, Any]]:
    inspector = inspect(conn)
    out = {}
    for table in inspector.get_table_names():
        if table in BOOKKEEPING:
            continue
        out[table] = {
            "columns": {c["name"]: (_kind(c["type"], conn.dialect), c["nullable"] and not c.get("primary_key"))
                        for c in inspector.get_columns(table)},
            "primary_key": sorted(inspector.get_pk_constraint(table)["constrained_columns"]),
        }
    return out


def _declared(dialect: Any) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "columns": {c.name: (_kind(c.type, dialect), bool(c.nullable) and not c.primary_key) for c in t.columns},
            "primary_key": sorted(c.name for c in t.primary_key.columns),
        }
        for name, t in metadata.tables.items()
    }


async def test_migrations_create_exactly_the_declared_tables(tmp_path: Path) -> None:
    engine = await open_sql(Settings(data_dir=tmp_path))
    try:
        async with engine.connect() as conn:
            migrated = await conn.run_sync(_reflect)
        declared = _declared(engine.dialect)
    finally:
        await engine.dispose()
    assert sorted(migrated) == sorted(declared), "tables created by the migrations vs declared in tables.py"
    for table in declared:
        assert migrated[table] == declared[table], table
