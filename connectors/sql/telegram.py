"""Telegram notification rules (shared record CRUD), per-chat cooldowns and the outbox of messages to send."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    and_,
    select,
    update,
)

from connectors.sql.base import (
    RecordRepository,
    Row,
    insert_absent,
    new_id,
    upsert_statement,
)
from connectors.sql.tables import (
    telegram_cooldowns,
    telegram_outbox,
    telegram_rules,
)
from schemas.notify import (
    NotifyFilters,
    OutboxMessage,
    QueuedMessage,
    TelegramRule,
    TelegramRuleIn,
)


class TelegramRepository(RecordRepository[TelegramRule]):
    """Notification rules, per-chat cooldowns and the outbox of messages to send."""

    table = telegram_rules

    def _new(self, body: TelegramRuleIn) -> TelegramRule:
        return TelegramRule(rule_id=new_id(), created_at=time.time(), **body.model_dump())

    def _row(self, r: TelegramRule) -> dict[str, Any]:
        return {"id": r.rule_id, "name": r.name, "chat_id": r.chat_id, "filters": r.filters.model_dump_json(),
                "active": r.active, "created_at": r.created_at}

    def _model(self, row: Row) -> TelegramRule:
        return TelegramRule(rule_id=row["id"], name=row["name"], chat_id=row["chat_id"],
                            filters=NotifyFilters.model_validate_json(row["filters"]), active=bool(row["active"]),
                            created_at=row["created_at"])

    async def enqueue(self, messages: list[QueuedMessage], cooldown_s: float) -> int:
        """Queue ``(message id, chat id, caption, thumbnail key, person key, event time)`` unless that chat
        heard about that person less than ``cooldown_s`` (event time) before. A message id already queued is
        skipped (replays). Returns how many were queued."""
        queued = 0
        now = time.time()
        c = telegram_cooldowns.c
        async with self.engine.begin() as conn:
            for msg_id, chat, text, thumb, person, at in messages:
                last = (await conn.execute(select(c.sent_at).where(and_(c.chat_id == chat, c.person_key == person)))
                        ).scalar_one_or_none()
                if last is not None and abs(at - last) < cooldown_s:
                    continue
                stmt = upsert_statement(conn, telegram_cooldowns).values(chat_id=chat, person_key=person, sent_at=at)
                await conn.execute(stmt.on_conflict_do_update(index_elements=["chat_id", "person_key"],
                                                              set_={"sent_at": stmt.excluded.sent_at}))
                await insert_absent(conn, telegram_outbox, [{
                    "id": msg_id, "chat_id": chat, "caption": text, "thumbnail_key": thumb, "status": "pending",
                    "attempts": 0, "created_at": now, "next_attempt_at": now}])
                queued += 1
        return queued

    async def due(self, limit: int = 20) -> list[OutboxMessage]:
        o = telegram_outbox.c
        q = (select(telegram_outbox).where(and_(o.status == "pending", o.next_attempt_at <= time.time()))
             .order_by(o.next_attempt_at).limit(limit))
        async with self.engine.connect() as conn:
            return [OutboxMessage.model_validate(dict(r)) for r in (await conn.execute(q)).mappings().all()]

    async def mark(self, msg_id: str, status: str, attempts: int, next_attempt_at: float, error: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(telegram_outbox).where(telegram_outbox.c.id == msg_id).values(
                status=status, attempts=attempts, next_attempt_at=next_attempt_at, error=error))

    async def outbox(self, status: str | None = None) -> list[OutboxMessage]:
        o = telegram_outbox.c
        q = select(telegram_outbox).order_by(o.created_at)
        if status:
            q = q.where(o.status == status)
        async with self.engine.connect() as conn:
            return [OutboxMessage.model_validate(dict(r)) for r in (await conn.execute(q)).mappings().all()]
