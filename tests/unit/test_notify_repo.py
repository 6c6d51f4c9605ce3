"""SQL repository of episodes, counters, webhooks and Telegram rules, on SQLite and on a PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from agents.episode_rules import EpisodeBuilder
from connectors.sql.base import NotFoundError
from connectors.sql.counters import CounterRepository, aggregate
from connectors.sql.engine import open_sql
from connectors.sql.episodes import EpisodeRepository
from connectors.sql.events import EventRepository
from connectors.sql.telegram import TelegramRepository
from connectors.sql.webhooks import WebhookRepository
from models.faces import confidences
from pipeline.settings import Settings
from schemas.messages import CounterRecord
from schemas.notify import CounterIn, NotifyFilters, TelegramRuleIn, WebhookIn
from tests.unit.notify_helpers import event, person


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: asyncpg connections are bound to one
async def engine(tmp_path: Path, sql_store: dict[str, str]):
    eng = await open_sql(Settings(data_dir=tmp_path, store=sql_store))
    yield eng
    await eng.dispose()


async def test_episodes_upsert_filter_and_acknowledge(engine) -> None:
    repo = EpisodeRepository(engine)
    b = EpisodeBuilder(confidences)
    evs = [event("e1", 100, person(1), camera="c1"),
           event("e2", 101, person(1), camera="c2", dossier="d1", watch_lists=("wl",), confidence=0.9),
           event("x1", 102, person(2), camera="c1")]
    events_repo = EventRepository(engine, lambda k: k)
    await events_repo.upsert_many(evs)
    changes = [c for e in evs for c in b.add(e, now=0)]
    await repo.save(changes)
    # a replayed older version does not overwrite the newer one
    await repo.save([changes[0]])
    ep = await repo.get("ep:e1")
    assert ep.event_count == 2 and ep.event_ids == ["e1", "e2"] and ep.dossier_id == "d1"
    assert [e.id for e in await repo.list(camera_id="c2")] == ["ep:e1"]
    assert [e.id for e in await repo.list(watch_list_id="wl")] == ["ep:e1"]
    assert [e.id for e in await repo.list(closed=False)] == ["ep:x1", "ep:e1"]
    assert await repo.list(dossier_id="d1", since=200) == []
    closes = b.tick(10_000)
    await repo.save(closes)
    assert len(await repo.list(closed=True)) == 2
    acked = await repo.acknowledge("ep:e1", "admin")
    assert acked.acknowledged and acked.acknowledged_by == "admin"
    ev = await events_repo.get("e2")
    assert ev.acknowledged
    with pytest.raises(NotFoundError):
        await repo.acknowledge("nope", "admin")


async def test_counters_and_records(engine) -> None:
    repo = CounterRepository(engine)
    c = await repo.create(CounterIn(name="door", camera_ids=["c1"], interval_s=60))
    assert (await repo.get(c.counter_id)).name == "door"
    await repo.save_records([CounterRecord(counter_id=c.counter_id, start=0, end=60, faces=1)])
    await repo.save_records([CounterRecord(counter_id=c.counter_id, start=0, end=60, faces=3, final=True),
                             CounterRecord(counter_id=c.counter_id, start=120, end=180, faces=2)])
    recs = await repo.records(c.counter_id)
    assert [(r.start, r.faces, r.final) for r in recs] == [(0, 3, True), (120, 2, False)]
    buckets = aggregate(recs, 0, 240, 120)
    assert [b["faces"] for b in buckets] == [3, 2]
    assert (await repo.update(c.counter_id, {"interval_s": 30})).interval_s == 30
    await repo.delete(c.counter_id)
    assert await repo.list_all() == []


async def test_webhook_outbox_batches_overflow_and_log(engine) -> None:
    repo = WebhookRepository(engine)
    w = await repo.create(WebhookIn(url="http://127.0.0.1:1/x", secret="s", topics=["events"]))
    assert (await repo.update(w.webhook_id, {"filters": NotifyFilters(matched="matched")})).filters.matched == "matched"
    await repo.enqueue([(w.webhook_id, f"i{n}", b'{"n":%d}' % n) for n in range(5)], queue_max=100)
    await repo.enqueue([(w.webhook_id, "i0", b'{"n":0}')], queue_max=100)  # duplicate ignored
    assert await repo.take_batch(w.webhook_id, batch_max=10, linger_s=60) is None  # lingering
    taken = await repo.take_batch(w.webhook_id, batch_max=3, linger_s=60)
    assert taken is not None
    d = taken.delivery
    assert d.item_ids == ["i0", "i1", "i2"] and taken.body == b'[{"n":0},{"n":1},{"n":2}]'
    [pending] = await repo.pending(w.webhook_id)
    assert pending.delivery.delivery_id == d.delivery_id and pending.body == b'[{"n":0},{"n":1},{"n":2}]'
    await repo.record_attempt(d.delivery_id, 1, "delivered", 200, None)
    overflow = await repo.enqueue([(w.webhook_id, f"j{n}", b"{}") for n in range(4)], queue_max=3)
    assert overflow == 3  # i3, i4, j0 dead
    dead = await repo.deliveries(w.webhook_id, status="dead")
    assert dead[0].item_ids == ["i3", "i4", "j0"] and dead[0].error == "queue overflow"
    d2 = await repo.take_batch(w.webhook_id, batch_max=10, linger_s=0)
    assert d2 is not None and d2.delivery.item_ids == ["j1", "j2", "j3"]
    assert {x.status for x in await repo.deliveries(w.webhook_id)} == {"delivered", "dead", "pending"}


async def test_telegram_rules_cooldown_and_outbox(engine) -> None:
    repo = TelegramRepository(engine)
    r = await repo.create(TelegramRuleIn(chat_id="42"))
    assert (await repo.list_all())[0].filters.matched == "matched"
    assert await repo.enqueue([("m1", "42", "hi", "thumbs/1.jpg", "dossier:d1", 1000)], cooldown_s=60) == 1
    assert await repo.enqueue([("m2", "42", "hi", None, "dossier:d1", 1030)], cooldown_s=60) == 0
    assert await repo.enqueue([("m3", "43", "hi", None, "dossier:d1", 1030)], cooldown_s=60) == 1
    assert await repo.enqueue([("m4", "42", "hi", None, "dossier:d1", 1061)], cooldown_s=60) == 1
    due = await repo.due()
    assert [m.id for m in due] == ["m1", "m3", "m4"] and due[0].thumbnail_key == "thumbs/1.jpg"
    await repo.mark("m1", "sent", 1, 0, None)
    assert [m.id for m in await repo.outbox("sent")] == ["m1"]
    await repo.delete(r.rule_id)
