"""Webhook definitions (shared record CRUD), the per-webhook outbox of items waiting for delivery, and the
delivery log."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    and_,
    delete,
    func,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.sql.base import (
    Paged,
    RecordRepository,
    Row,
    insert_absent,
    json_text,
    keyset_page,
    new_id,
)
from connectors.sql.tables import (
    webhook_deliveries,
    webhook_outbox,
    webhooks,
)
from schemas.notify import (
    Delivery,
    NotifyFilters,
    OutboxItem,
    PendingDelivery,
    Webhook,
    WebhookIn,
)


class WebhookRepository(RecordRepository[Webhook]):
    """Webhook definitions, the outbox of items waiting for delivery, and the delivery log."""

    table = webhooks

    def _new(self, body: WebhookIn) -> Webhook:
        return Webhook(webhook_id=new_id(), created_at=time.time(), **body.model_dump())

    def _row(self, w: Webhook) -> dict[str, Any]:
        return {"id": w.webhook_id, "url": w.url, "secret": w.secret, "topics": json_text(w.topics),
                "filters": w.filters.model_dump_json(), "active": w.active, "max_attempts": w.max_attempts,
                "created_at": w.created_at}

    def _model(self, row: Row) -> Webhook:
        return Webhook(webhook_id=row["id"], url=row["url"], secret=row["secret"],
                       topics=orjson.loads(row["topics"]), filters=NotifyFilters.model_validate_json(row["filters"]),
                       active=bool(row["active"]), max_attempts=row["max_attempts"], created_at=row["created_at"])

    async def _after_delete(self, conn: AsyncConnection, ident: str) -> None:
        await conn.execute(delete(webhook_outbox).where(webhook_outbox.c.webhook_id == ident))

    # outbox ---------------------------------------------------------------------------------------

    async def enqueue(self, items: list[OutboxItem], queue_max: int) -> int:
        """Add ``(webhook id, item id, item JSON)`` to the outbox (an item already there is skipped).
        Past ``queue_max`` waiting items per webhook, the oldest go to a dead delivery ("queue overflow").
        Returns how many items overflowed."""
        if not items:
            return 0
        now = time.time()
        seq = time.time_ns()
        rows = [{"webhook_id": w, "item_id": i, "seq": seq + n, "body": b.decode(), "created_at": now}
                for n, (w, i, b) in enumerate(items)]
        overflow = 0
        async with self.engine.begin() as conn:
            await insert_absent(conn, webhook_outbox, rows)
            for wid in {w for w, _, _ in items}:
                overflow += await self._trim(conn, wid, queue_max, now)
        return overflow

    async def _trim(self, conn: AsyncConnection, webhook_id: str, queue_max: int, now: float) -> int:
        o = webhook_outbox.c
        count = (await conn.execute(select(func.count()).where(o.webhook_id == webhook_id))).scalar_one()
        if count <= queue_max:
            return 0
        rows = (await conn.execute(select(o.item_id, o.body).where(o.webhook_id == webhook_id)
                                   .order_by(o.seq).limit(count - queue_max)
                                   .with_for_update(skip_locked=True))).all()  # PostgreSQL: a row claim
        await self._move_to_delivery(conn, webhook_id, rows, "dead", now, "queue overflow")
        return len(rows)

    async def take_batch(self, webhook_id: str, batch_max: int, linger_s: float) -> PendingDelivery | None:
        """Move up to ``batch_max`` waiting items into a new pending delivery, once the batch is full or
        its oldest item has waited ``linger_s``. Returns the delivery and its body, or None."""
        o = webhook_outbox.c
        now = time.time()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(select(o.item_id, o.body, o.created_at).where(o.webhook_id == webhook_id)
                                       .order_by(o.seq).limit(batch_max)
                                       .with_for_update(skip_locked=True))).all()  # PostgreSQL: a row claim
            if not rows or (len(rows) < batch_max and now - rows[0].created_at < linger_s):
                return None
            d = await self._move_to_delivery(conn, webhook_id, [(r.item_id, r.body) for r in rows],
                                             "pending", now, None)
        return PendingDelivery(delivery=d, body=_batch_body(r.body for r in rows))

    async def _move_to_delivery(self, conn: AsyncConnection, webhook_id: str, rows: Sequence[Any], status: str,
                                now: float, error: str | None) -> Delivery:
        item_ids = [r[0] for r in rows]
        body = _batch_body(r[1] for r in rows).decode()
        d = Delivery(delivery_id=new_id(), webhook_id=webhook_id, status=status,  # type: ignore[arg-type]
                     item_ids=item_ids, created_at=now, error=error)
        await conn.execute(webhook_deliveries.insert().values(
            id=d.delivery_id, webhook_id=webhook_id, status=status, attempts=0, item_ids=json_text(item_ids), body=body,
            created_at=now, error=error))
        o = webhook_outbox.c
        for chunk in range(0, len(item_ids), 500):
            await conn.execute(delete(webhook_outbox).where(and_(
                o.webhook_id == webhook_id, o.item_id.in_(item_ids[chunk:chunk + 500]))))
        return d

    async def pending(self, webhook_id: str) -> list[PendingDelivery]:
        """Pending deliveries (oldest first) with their bodies: resumed after a restart."""
        d = webhook_deliveries.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(webhook_deliveries).where(and_(
                d.webhook_id == webhook_id, d.status == "pending")).order_by(d.created_at))).mappings().all()
        return [PendingDelivery(delivery=_delivery(r), body=r["body"].encode()) for r in rows]

    async def record_attempt(self, delivery_id: str, attempts: int, status: str, http_status: int | None,
                             error: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(
                attempts=attempts, status=status, http_status=http_status, error=error,
                last_attempt_at=time.time()))

    async def deliveries(self, webhook_id: str, status: str | None = None, limit: int = 100) -> list[Delivery]:
        return (await self.deliveries_page(webhook_id, status, limit))[0]

    async def deliveries_page(self, webhook_id: str, status: str | None = None, limit: int = 100,
                              cursor: str | None = None) -> Paged[Delivery]:
        """The delivery log, newest first, one page and the next page's cursor."""
        d = webhook_deliveries.c
        conds = [d.webhook_id == webhook_id] + ([d.status == status] if status else [])
        rows, nxt = await keyset_page(self.engine, select(webhook_deliveries).where(and_(true(), *conds)),
                                      d.created_at, d.id, limit, cursor, descending=True)
        return Paged([_delivery(r) for r in rows], nxt)


def _batch_body(bodies: Iterable[str]) -> bytes:
    return ("[" + ",".join(bodies) + "]").encode()


def _delivery(row: Any) -> Delivery:
    return Delivery(delivery_id=row["id"], webhook_id=row["webhook_id"], status=row["status"],
                    attempts=row["attempts"], item_ids=orjson.loads(row["item_ids"]), created_at=row["created_at"],
                    last_attempt_at=row["last_attempt_at"], http_status=row["http_status"], error=row["error"])
