"""SQL repository of episodes, counters, webhooks (with their outbox and delivery log) and Telegram rules.

Tables are declared in ``tables.py`` (created by ``migrations/0100_notify.sql``). Writes that a stage repeats
after a crash (episodes, counter records, outbox items) are idempotent upserts / insert-if-absent keyed by
deterministic ids.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Table,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from connectors.sql import tables as core
from connectors.sql.attributes import EPISODE_COLUMNS, attribute_conditions, attribute_values
from connectors.sql.repositories import NotFoundError, keyset_page, new_id, upsert_statement
from connectors.sql.tables import (
    counter_records,
    counters,
    episode_cameras,
    episode_events,
    episode_watch_lists,
    episodes,
    telegram_cooldowns,
    telegram_outbox,
    telegram_rules,
    webhook_deliveries,
    webhook_outbox,
    webhooks,
)
from schemas.attributes import AttributeFilters
from schemas.messages import CounterRecord, Episode
from schemas.notify import (
    Counter,
    CounterIn,
    Delivery,
    NotifyFilters,
    TelegramRule,
    TelegramRuleIn,
    Webhook,
    WebhookIn,
)


def _j(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _insert_absent(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(upsert_statement(conn, table).on_conflict_do_nothing(), rows)


# --- episodes -------------------------------------------------------------------------------------------


class EpisodeRepository:
    """Episodes as the episodes stage publishes them; listing and acknowledgement for the API."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, changes: Iterable[tuple[Episode, list[str]]]) -> None:
        """Upsert episodes (latest state wins by ``event_count`` and ``closed``) and link their events."""
        now = time.time()
        async with self.engine.begin() as conn:
            for ep, event_ids in changes:
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
                await _insert_absent(conn, episode_events, [{"episode_id": ep.episode_id, "event_id": e}
                                                            for e in event_ids])
                await _insert_absent(conn, episode_cameras, [{"episode_id": ep.episode_id, "camera_id": c}
                                                             for c in ep.camera_ids])
                await _insert_absent(conn, episode_watch_lists, [{"episode_id": ep.episode_id, "watch_list_id": w}
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

    async def get(self, episode_id: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(episodes).where(episodes.c.id == episode_id))).mappings().first()
            if row is None:
                raise NotFoundError(episode_id)
            ids = (await conn.execute(select(episode_events.c.event_id)
                                      .where(episode_events.c.episode_id == episode_id))).scalars().all()
        return {**_episode_out(row), "event_ids": sorted(ids)}

    async def list(
        self, *, closed: bool | None = None, camera_id: str | None = None, watch_list_id: str | None = None,
        dossier_id: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = 100, cursor: str | None = None, attributes: AttributeFilters | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first (by ``opened_at``); ``since``/``until`` bound the episode's time span overlap."""
        items, _ = await self.list_page(closed=closed, camera_id=camera_id, watch_list_id=watch_list_id,
                                        dossier_id=dossier_id, since=since, until=until, limit=limit, cursor=cursor,
                                        attributes=attributes)
        return items

    async def list_page(
        self, *, closed: bool | None = None, camera_id: str | None = None, watch_list_id: str | None = None,
        dossier_id: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = 100, cursor: str | None = None, attributes: AttributeFilters | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
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
        return [_episode_out(r) for r in rows], nxt

    async def acknowledge(self, episode_id: str, by: str) -> dict[str, Any]:
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


def _episode_out(row: Any) -> dict[str, Any]:
    doc = orjson.loads(row["doc"])
    doc.pop("schema_version", None)
    doc.update(acknowledged=bool(row["acknowledged"]), acknowledged_at=row["acknowledged_at"],
               acknowledged_by=row["acknowledged_by"])
    return doc


# --- counters -------------------------------------------------------------------------------------------


class CounterRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, body: CounterIn) -> Counter:
        c = Counter(counter_id=new_id(), created_at=time.time(), **body.model_dump())
        async with self.engine.begin() as conn:
            await conn.execute(counters.insert().values(_counter_row(c)))
        return c

    async def get(self, counter_id: str) -> Counter:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(counters).where(counters.c.id == counter_id))).mappings().first()
        if row is None:
            raise NotFoundError(counter_id)
        return _counter(row)

    async def list_all(self) -> list[Counter]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(counters).order_by(counters.c.created_at))).mappings().all()
        return [_counter(r) for r in rows]

    async def list_page(self, limit: int, cursor: str | None = None) -> tuple[list[Counter], str | None]:
        rows, nxt = await keyset_page(self.engine, select(counters), counters.c.created_at, counters.c.id, limit,
                                      cursor)
        return [_counter(r) for r in rows], nxt

    async def update(self, counter_id: str, changes: dict[str, Any]) -> Counter:
        current = await self.get(counter_id)
        c = current.model_copy(update=changes)
        async with self.engine.begin() as conn:
            await conn.execute(update(counters).where(counters.c.id == counter_id).values(_counter_row(c)))
        return c

    async def delete(self, counter_id: str) -> None:
        async with self.engine.begin() as conn:
            res = await conn.execute(delete(counters).where(counters.c.id == counter_id))
            if res.rowcount == 0:
                raise NotFoundError(counter_id)
            await conn.execute(delete(counter_records).where(counter_records.c.counter_id == counter_id))

    async def save_records(self, records: Iterable[CounterRecord]) -> None:
        """Upsert by ``(counter_id, start)``: the latest version of a window wins."""
        now = time.time()
        rows = [{"counter_id": r.counter_id, "start_at": r.start, "end_at": r.end, "faces": r.faces,
                 "matched": r.matched, "unmatched": r.unmatched, "camera_ids": _j(r.camera_ids),
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


def _counter_row(c: Counter) -> dict[str, Any]:
    return {"id": c.counter_id, "name": c.name, "camera_ids": _j(c.camera_ids), "camera_groups": _j(c.camera_groups),
            "interval_s": c.interval_s, "active": c.active, "created_at": c.created_at}


def _counter(row: Any) -> Counter:
    return Counter(counter_id=row["id"], name=row["name"], camera_ids=orjson.loads(row["camera_ids"]),
                   camera_groups=orjson.loads(row["camera_groups"]), interval_s=row["interval_s"],
                   active=bool(row["active"]), created_at=row["created_at"])


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


# --- webhooks -------------------------------------------------------------------------------------------


class WebhookRepository:
    """Webhook definitions, the outbox of items waiting for delivery, and the delivery log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, body: WebhookIn) -> Webhook:
        w = Webhook(webhook_id=new_id(), created_at=time.time(), **body.model_dump())
        async with self.engine.begin() as conn:
            await conn.execute(webhooks.insert().values(_webhook_row(w)))
        return w

    async def get(self, webhook_id: str) -> Webhook:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).mappings().first()
        if row is None:
            raise NotFoundError(webhook_id)
        return _webhook(row)

    async def list_all(self) -> list[Webhook]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(webhooks).order_by(webhooks.c.created_at))).mappings().all()
        return [_webhook(r) for r in rows]

    async def list_page(self, limit: int, cursor: str | None = None) -> tuple[list[Webhook], str | None]:
        rows, nxt = await keyset_page(self.engine, select(webhooks), webhooks.c.created_at, webhooks.c.id, limit,
                                      cursor)
        return [_webhook(r) for r in rows], nxt

    async def update(self, webhook_id: str, changes: dict[str, Any]) -> Webhook:
        w = (await self.get(webhook_id)).model_copy(update=changes)
        w = Webhook.model_validate(w.model_dump())
        async with self.engine.begin() as conn:
            await conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(_webhook_row(w)))
        return w

    async def delete(self, webhook_id: str) -> None:
        async with self.engine.begin() as conn:
            res = await conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
            if res.rowcount == 0:
                raise NotFoundError(webhook_id)
            await conn.execute(delete(webhook_outbox).where(webhook_outbox.c.webhook_id == webhook_id))

    # outbox ---------------------------------------------------------------------------------------

    async def enqueue(self, items: list[tuple[str, str, bytes]], queue_max: int) -> int:
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
            await _insert_absent(conn, webhook_outbox, rows)
            for wid in {w for w, _, _ in items}:
                overflow += await self._trim(conn, wid, queue_max, now)
        return overflow

    async def _trim(self, conn: AsyncConnection, webhook_id: str, queue_max: int, now: float) -> int:
        o = webhook_outbox.c
        count = (await conn.execute(select(func.count()).where(o.webhook_id == webhook_id))).scalar_one()
        if count <= queue_max:
            return 0
        rows = (await conn.execute(select(o.item_id, o.body).where(o.webhook_id == webhook_id)
                                   .order_by(o.seq).limit(count - queue_max))).all()
        await self._move_to_delivery(conn, webhook_id, rows, "dead", now, "queue overflow")
        return len(rows)

    async def take_batch(self, webhook_id: str, batch_max: int, linger_s: float) -> tuple[Delivery, bytes] | None:
        """Move up to ``batch_max`` waiting items into a new pending delivery, once the batch is full or
        its oldest item has waited ``linger_s``. Returns the delivery and its body, or None."""
        o = webhook_outbox.c
        now = time.time()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(select(o.item_id, o.body, o.created_at).where(o.webhook_id == webhook_id)
                                       .order_by(o.seq).limit(batch_max))).all()
            if not rows or (len(rows) < batch_max and now - rows[0].created_at < linger_s):
                return None
            d = await self._move_to_delivery(conn, webhook_id, [(r.item_id, r.body) for r in rows],
                                             "pending", now, None)
        return d, _batch_body(r.body for r in rows)

    async def _move_to_delivery(self, conn: AsyncConnection, webhook_id: str, rows: Sequence[Any], status: str,
                                now: float, error: str | None) -> Delivery:
        item_ids = [r[0] for r in rows]
        body = _batch_body(r[1] for r in rows).decode()
        d = Delivery(delivery_id=new_id(), webhook_id=webhook_id, status=status,  # type: ignore[arg-type]
                     item_ids=item_ids, created_at=now, error=error)
        await conn.execute(webhook_deliveries.insert().values(
            id=d.delivery_id, webhook_id=webhook_id, status=status, attempts=0, item_ids=_j(item_ids), body=body,
            created_at=now, error=error))
        o = webhook_outbox.c
        for chunk in range(0, len(item_ids), 500):
            await conn.execute(delete(webhook_outbox).where(and_(
                o.webhook_id == webhook_id, o.item_id.in_(item_ids[chunk:chunk + 500]))))
        return d

    async def pending(self, webhook_id: str) -> list[tuple[Delivery, bytes]]:
        """Pending deliveries (oldest first) with their bodies: resumed after a restart."""
        d = webhook_deliveries.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(webhook_deliveries).where(and_(
                d.webhook_id == webhook_id, d.status == "pending")).order_by(d.created_at))).mappings().all()
        return [(_delivery(r), r["body"].encode()) for r in rows]

    async def record_attempt(self, delivery_id: str, attempts: int, status: str, http_status: int | None,
                             error: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(
                attempts=attempts, status=status, http_status=http_status, error=error,
                last_attempt_at=time.time()))

    async def deliveries(self, webhook_id: str, status: str | None = None, limit: int = 100) -> list[Delivery]:
        return (await self.deliveries_page(webhook_id, status, limit))[0]

    async def deliveries_page(self, webhook_id: str, status: str | None = None, limit: int = 100,
                              cursor: str | None = None) -> tuple[list[Delivery], str | None]:
        """The delivery log, newest first, one page and the next page's cursor."""
        d = webhook_deliveries.c
        conds = [d.webhook_id == webhook_id] + ([d.status == status] if status else [])
        rows, nxt = await keyset_page(self.engine, select(webhook_deliveries).where(and_(true(), *conds)),
                                      d.created_at, d.id, limit, cursor, descending=True)
        return [_delivery(r) for r in rows], nxt


def _batch_body(bodies: Iterable[str]) -> bytes:
    return ("[" + ",".join(bodies) + "]").encode()


def _webhook_row(w: Webhook) -> dict[str, Any]:
    return {"id": w.webhook_id, "url": w.url, "secret": w.secret, "topics": _j(w.topics),
            "filters": w.filters.model_dump_json(), "active": w.active, "max_attempts": w.max_attempts,
            "created_at": w.created_at}


def _webhook(row: Any) -> Webhook:
    return Webhook(webhook_id=row["id"], url=row["url"], secret=row["secret"], topics=orjson.loads(row["topics"]),
                   filters=NotifyFilters.model_validate_json(row["filters"]), active=bool(row["active"]),
                   max_attempts=row["max_attempts"], created_at=row["created_at"])


def _delivery(row: Any) -> Delivery:
    return Delivery(delivery_id=row["id"], webhook_id=row["webhook_id"], status=row["status"],
                    attempts=row["attempts"], item_ids=orjson.loads(row["item_ids"]), created_at=row["created_at"],
                    last_attempt_at=row["last_attempt_at"], http_status=row["http_status"], error=row["error"])


# --- Telegram -------------------------------------------------------------------------------------------


class TelegramRepository:
    """Notification rules, per-chat cooldowns and the outbox of messages to send."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, body: TelegramRuleIn) -> TelegramRule:
        r = TelegramRule(rule_id=new_id(), created_at=time.time(), **body.model_dump())
        async with self.engine.begin() as conn:
            await conn.execute(telegram_rules.insert().values(_rule_row(r)))
        return r

    async def get(self, rule_id: str) -> TelegramRule:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(telegram_rules).where(telegram_rules.c.id == rule_id))).mappings().first()
        if row is None:
            raise NotFoundError(rule_id)
        return _rule(row)

    async def list_all(self) -> list[TelegramRule]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(telegram_rules).order_by(telegram_rules.c.created_at))).mappings().all()
        return [_rule(r) for r in rows]

    async def list_page(self, limit: int, cursor: str | None = None) -> tuple[list[TelegramRule], str | None]:
        c = telegram_rules.c
        rows, nxt = await keyset_page(self.engine, select(telegram_rules), c.created_at, c.id, limit, cursor)
        return [_rule(r) for r in rows], nxt

    async def update(self, rule_id: str, changes: dict[str, Any]) -> TelegramRule:
        r = TelegramRule.model_validate((await self.get(rule_id)).model_copy(update=changes).model_dump())
        async with self.engine.begin() as conn:
            await conn.execute(update(telegram_rules).where(telegram_rules.c.id == rule_id).values(_rule_row(r)))
        return r

    async def delete(self, rule_id: str) -> None:
        async with self.engine.begin() as conn:
            res = await conn.execute(delete(telegram_rules).where(telegram_rules.c.id == rule_id))
            if res.rowcount == 0:
                raise NotFoundError(rule_id)

    async def enqueue(self, messages: list[tuple[str, str, str, str | None, str, float]], cooldown_s: float) -> int:
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
                await _insert_absent(conn, telegram_outbox, [{
                    "id": msg_id, "chat_id": chat, "caption": text, "thumbnail_key": thumb, "status": "pending",
                    "attempts": 0, "created_at": now, "next_attempt_at": now}])
                queued += 1
        return queued

    async def due(self, limit: int = 20) -> list[dict[str, Any]]:
        o = telegram_outbox.c
        q = (select(telegram_outbox).where(and_(o.status == "pending", o.next_attempt_at <= time.time()))
             .order_by(o.next_attempt_at).limit(limit))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def mark(self, msg_id: str, status: str, attempts: int, next_attempt_at: float, error: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(telegram_outbox).where(telegram_outbox.c.id == msg_id).values(
                status=status, attempts=attempts, next_attempt_at=next_attempt_at, error=error))

    async def outbox(self, status: str | None = None) -> list[dict[str, Any]]:
        o = telegram_outbox.c
        q = select(telegram_outbox).order_by(o.created_at)
        if status:
            q = q.where(o.status == status)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]


def _rule_row(r: TelegramRule) -> dict[str, Any]:
    return {"id": r.rule_id, "name": r.name, "chat_id": r.chat_id, "filters": r.filters.model_dump_json(),
            "active": r.active, "created_at": r.created_at}


def _rule(row: Any) -> TelegramRule:
    return TelegramRule(rule_id=row["id"], name=row["name"], chat_id=row["chat_id"],
                        filters=NotifyFilters.model_validate_json(row["filters"]), active=bool(row["active"]),
                        created_at=row["created_at"])
