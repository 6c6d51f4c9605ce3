"""Two webhook dispatchers on one store (SQLite and a PostgreSQL server): each delivery is sent once, and a
stopped dispatcher's webhooks are taken over by the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

from agents.webhooks import Dispatcher, WebhookBook, WebhooksAgent
from connectors.sql.engine import open_sql
from connectors.sql.webhooks import WebhookRepository
from connectors.webhook_client import WebhookClient
from models.faces import confidences
from pipeline.settings import Settings
from schemas.notify import WebhookIn
from tests.integration.test_webhooks import SECRET, Receiver
from tests.unit.notify_helpers import event, incoming, person, wait_for


@contextlib.asynccontextmanager
async def dispatcher(settings: Settings):  # -> (Dispatcher, stop event)
    """One dispatcher as a separate instance would run it: its own engine, book, HTTP client and locks."""
    engine = await open_sql(settings)
    repo = WebhookRepository(engine)
    stop = asyncio.Event()
    async with WebhookClient(2.0, allow_private=True) as client:
        d = Dispatcher(settings=settings.webhooks, repo=repo, book=WebhookBook(repo, settings.webhooks.refresh_s),
                       client=client, wake=asyncio.Event())
        task = asyncio.create_task(d.run(stop))
        try:
            yield d, stop
        finally:
            stop.set()
            await task
            await engine.dispose()


async def test_two_dispatchers_deliver_each_item_once(tmp_path: Path, sql_store: dict[str, str]) -> None:
    settings = Settings(data_dir=tmp_path, store=sql_store,
                        webhooks={"batch_linger_s": 0.1, "refresh_s": 0.3, "batch_max": 7})
    receivers = [Receiver() for _ in range(3)]
    for r in receivers:
        await r.start()
    engine = await open_sql(settings)
    try:
        repo = WebhookRepository(engine)
        hooks = [await repo.create(WebhookIn(url=r.url, secret=SECRET)) for r in receivers]
        agent = WebhooksAgent(settings=settings, repo=repo, book=WebhookBook(repo, 0.1), similarity=confidences)
        async with dispatcher(settings) as (a, stop_a), dispatcher(settings) as (b, _stop_b):
            first = [event(f"e{i}", 1000 + i, person(i)) for i in range(40)]
            for chunk in range(0, 40, 10):  # both dispatchers are polling while the items arrive
                await agent.handle(incoming(first[chunk:chunk + 10]))
                await asyncio.sleep(0.05)
            await wait_for(lambda: all(len(r.items) >= 40 for r in receivers), 20)
            await asyncio.sleep(1.0)  # time for any duplicate to arrive
            for r in receivers:
                assert len(r.items) == 40, f"{len(r.items)} items sent for 40 events"
            owners = (a.owned, b.owned)
            assert not owners[0] & owners[1], "a webhook had two owners"
            assert owners[0] | owners[1] == {h.webhook_id for h in hooks}

            # the owner of some webhooks stops; the other takes them over and delivers what comes next, once
            quitter, stayer = (a, b) if a.owned else (b, a)
            if quitter is a:
                stop_a.set()
            else:
                _stop_b.set()
            await wait_for(lambda: len(quitter.owned) == 0, 10)
            await wait_for(lambda: len(stayer.owned) == 3, 10)
            second = [event(f"f{i}", 2000 + i, person(100 + i)) for i in range(15)]
            await agent.handle(incoming(second))
            await wait_for(lambda: all(len(r.items) >= 55 for r in receivers), 20)
            await asyncio.sleep(1.0)
        for r in receivers:
            counts = Counter(item["id"] for item in r.items)
            assert sorted(counts) == sorted(e.event_id for e in first + second)
            assert set(counts.values()) == {1}, f"sent more than once: {[k for k, n in counts.items() if n > 1]}"
        for h in hooks:
            log = await repo.deliveries(h.webhook_id)
            assert {d.status for d in log} == {"delivered"} and sum(len(d.item_ids) for d in log) == 55
    finally:
        await engine.dispose()
        for r in receivers:
            await r.stop()
