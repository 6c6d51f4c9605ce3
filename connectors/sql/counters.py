"""Counter definitions (shared record CRUD) and their per-window records (upserted by the counters stage)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import (
    and_,
    delete,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.sql.base import (
    RecordRepository,
    Row,
    json_text,
    new_id,
    upsert_statement,
)
from connectors.sql.tables import (
    counter_records,
    counters,
)
from schemas.messages import CounterRecord
from schemas.notify import (
    Counter,
    CounterIn,
)


class CounterRepository(RecordRepository[Counter]):
    """Counter definitions, and the records of their windows."""

    table = counters

    def _new(self, body: CounterIn) -> Counter:
        return Counter(counter_id=new_id(), created_at=time.time(), **body.model_dump())

    def _row(self, c: Counter) -> dict[str, Any]:
        return {"id": c.counter_id, "name": c.name, "camera_ids": json_text(c.camera_ids),
                "camera_groups": json_text(c.camera_groups), "interval_s": c.interval_s, "active": c.active,
                "created_at": c.created_at}

    def _model(self, row: Row) -> Counter:
        return Counter(counter_id=row["id"], name=row["name"], camera_ids=orjson.loads(row["camera_ids"]),
                       camera_groups=orjson.loads(row["camera_groups"]), interval_s=row["interval_s"],
                       active=bool(row["active"]), created_at=row["created_at"])

    async def _after_delete(self, conn: AsyncConnection, ident: str) -> None:
        await conn.execute(delete(counter_records).where(counter_records.c.counter_id == ident))

    async def save_records(self, records: Iterable[CounterRecord]) -> None:
        """Upsert by ``(counter_id, start)``: the latest version of a window wins."""
        now = time.time()
        rows = [{"counter_id": r.counter_id, "start_at": r.start, "end_at": r.end, "faces": r.faces,
                 "matched": r.matched, "unmatched": r.unmatched, "camera_ids": json_text(r.camera_ids),
                 "final": r.final, "updated_at": now} for r in records]
        if not rows:
            return
        async with self.engine.begin() as conn:
            for row in rows:
                stmt = upsert_statement(conn, counter_records).values(row)
                keep = {k: getattr(stmt.excluded, k) for k in row if k not in ("counter_id", "start_at")}
                await conn.execute(stmt.on_conflict_do_update(index_elements=["counter_id", "start_at"], set_=keep))

    async def records(self, counter_id: str, since: float | None = None, until: float | None = None,
                      limit: int = 10_000) -> list[CounterRecord]:
        r = counter_records.c
        conds = [r.counter_id == counter_id]
        if since is not None:
            conds.append(r.start_at >= since)
        if until is not None:
            conds.append(r.start_at < until)
        q = select(counter_records).where(and_(true(), *conds)).order_by(r.start_at).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [CounterRecord(counter_id=x["counter_id"], start=x["start_at"], end=x["end_at"], faces=x["faces"],
                              matched=x["matched"], unmatched=x["unmatched"],
                              camera_ids=orjson.loads(x["camera_ids"]), final=bool(x["final"])) for x in rows]

    async def open_records(self, since: float) -> list[CounterRecord]:
        """Windows ending after ``since`` (to resume counting after a restart)."""
        async with self.engine.connect() as conn:
            ids = (await conn.execute(select(counters.c.id))).scalars().all()
        out: list[CounterRecord] = []
        for cid in ids:
            out.extend(x for x in await self.records(cid) if x.end >= since)
        return out


def aggregate(records: list[CounterRecord], since: float, until: float, step: float) -> list[dict[str, Any]]:
    """Sum records into buckets ``[since + k*step, ...)`` up to ``until`` (empty buckets are zeros)."""
    n = max(0, int((until - since + step - 1e-9) // step))
    buckets = [{"start": since + k * step, "end": min(until, since + (k + 1) * step), "faces": 0, "matched": 0,
                "unmatched": 0} for k in range(min(n, 100_000))]
    for r in records:
        k = int((r.start - since) // step)
        if 0 <= k < len(buckets):
            b = buckets[k]
            b["faces"] += r.faces
            b["matched"] += r.matched
            b["unmatched"] += r.unmatched
    return buckets
