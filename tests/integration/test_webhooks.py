"""Webhook sink against a real aiohttp receiver on 127.0.0.1 and a real SQLite store (no broker: the
agent's ``handle`` is fed directly; the runner's commit path is tested with the pipeline)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import orjson
import standardwebhooks
from aiohttp import web

from agents.webhooks import Dispatcher, WebhookBook, WebhooksAgent
from connectors.sql.engine import open_sql
from connectors.sql.webhooks import WebhookRepository
from connectors.webhook_client import ID_HEADER, WebhookClient, new_secret
from models.faces import confidences
from pipeline.settings import Settings
from schemas.notify import NotifyFilters, WebhookIn
from tests.unit.notify_helpers import event, incoming, person, wait_for

SECRET = new_secret()  # whsec_...: what Standard Webhooks libraries take as it is


class Receiver:
    """A webhook receiver: records verified payload items; ``status`` forces a reply code; can be stopped
    and restarted on the same port (down = connection refused)."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.deliveries: list[str] = []
        self.bad_signatures = 0
        self.status = 200
        self.delay_s = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status)
        try:  # the reference implementation verifies id, timestamp (freshness) and signature
            standardwebhooks.Webhook(SECRET).verify(body, dict(request.headers))
        except standardwebhooks.WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.deliveries.append(request.headers[ID_HEADER])
        self.items.extend(orjson.loads(body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@contextlib.asynccontextmanager
async def sink(tmp_path: Path, allow_private: bool = True, **webhooks: object):
    settings = Settings(data_dir=tmp_path, webhooks={"batch_linger_s": 0.2, "refresh_s": 0.5, **webhooks})
    engine = await open_sql(settings)
    repo = WebhookRepository(engine)
    book = WebhookBook(repo, settings.webhooks.refresh_s)
    wake = asyncio.Event()
    stop = asyncio.Event()
    async with WebhookClient(2.0, allow_private=allow_private) as client:
        agent = WebhooksAgent(settings=settings, repo=repo, book=book, similarity=confidences, wake=wake)
        task = asyncio.create_task(Dispatcher(settings=settings.webhooks, repo=repo, book=book, client=client,
                                                  wake=wake).run(stop))
        try:
            yield agent, repo
        finally:
            stop.set()
            await task
            await engine.dispose()


@contextlib.asynccontextmanager
async def running_receiver():
    """Started inside the test's own event loop (async fixtures run on the session loop here)."""
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_signed_batched_filtered_deliveries(tmp_path: Path) -> None:
    async with running_receiver() as receiver, sink(tmp_path, batch_max=10) as (agent, repo):
        w = await repo.create(WebhookIn(url=receiver.url, secret=SECRET, topics=["events"],
                                    filters=NotifyFilters(camera_ids=["cam1"])))
        events = [event(f"e{i}", 1000 + i, person(i), camera="cam1" if i % 5 else "cam2") for i in range(30)]
        await agent.handle(incoming(events))
        await agent.handle(incoming(events[:3]))  # a replayed batch adds nothing
        expected = [e.event_id for e in events if e.camera_id == "cam1"]
        await wait_for(lambda: len(receiver.items) >= len(expected), 10)
        await asyncio.sleep(0.5)
        assert [i["id"] for i in receiver.items] == expected
        assert receiver.items[0]["type"] == "event" and receiver.items[0]["version"] == 1
        assert receiver.items[0]["data"]["thumbnail_url"] == f"http://127.0.0.1:8080/v1/media/thumbs/{expected[0]}.jpg"
        assert receiver.bad_signatures == 0 and len(receiver.deliveries) == 3  # 24 items, batches of 10
        log = await repo.deliveries(w.webhook_id)
        assert {d.status for d in log} == {"delivered"} and sum(len(d.item_ids) for d in log) == 24


async def test_receiver_down_30s_then_back_gets_everything(tmp_path: Path) -> None:
    async with running_receiver() as receiver, \
            sink(tmp_path, batch_max=50, backoff_base_s=1.0, max_attempts=10) as (agent, repo):
        await repo.create(WebhookIn(url=receiver.url, secret=SECRET))
        await receiver.stop()  # down: connection refused
        t0 = time.monotonic()
        for k in range(3):  # events keep coming while it is down; handle stays fast
            started = time.monotonic()
            await agent.handle(incoming([event(f"d{k}-{i}", 1000 + i, person(i)) for i in range(20)]))
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(1.0)
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        await receiver.start()  # back, on the same port
        await wait_for(lambda: len(receiver.items) >= 60, 35)
        assert sorted(i["id"] for i in receiver.items) == sorted(f"d{k}-{i}" for k in range(3) for i in range(20))
        assert receiver.bad_signatures == 0


async def test_dead_letter_after_max_attempts_and_slow_receiver_isolated(tmp_path: Path) -> None:
    async with running_receiver() as receiver, \
            sink(tmp_path, backoff_base_s=0.2, max_attempts=3, queue_max=25) as (agent, repo):
        receiver.status = 500
        w = await repo.create(WebhookIn(url=receiver.url, secret=SECRET))
        await agent.handle(incoming([event("x", 1000, person(1))]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            dead = await repo.deliveries(w.webhook_id, status="dead")
            if dead:
                break
            await asyncio.sleep(0.1)
        assert dead and dead[0].attempts == 3 and dead[0].http_status == 500 and dead[0].item_ids == ["x"]
        # a slow receiver: consumption is not slowed, and the outbox stays bounded
        receiver.status, receiver.delay_s = 200, 5.0
        started = time.monotonic()
        for k in range(4):
            await agent.handle(incoming([event(f"s{k}-{i}", 1000 + i, person(i)) for i in range(20)]))
        assert time.monotonic() - started < 2.0
        assert agent.overflowed > 0
        overflow = [d for d in await repo.deliveries(w.webhook_id, status="dead") if d.error == "queue overflow"]
        assert overflow


async def test_a_receiver_name_that_resolves_to_an_internal_address_is_refused_at_delivery(tmp_path: Path) -> None:
    """DNS rebinding (issue 16): a webhook stored while its name resolved to a public address (here stored
    directly, as the API would have accepted it) whose name resolves to loopback at delivery time
    (``localhost``) is not delivered to while internal addresses are not allowed: the connection is refused
    at connect time and the reason is in the delivery log; nothing reaches the receiver."""
    async with running_receiver() as receiver, sink(tmp_path, allow_private=False, max_attempts=1) as (agent, repo):
        w = await repo.create(WebhookIn(url=f"http://localhost:{receiver.port}/hook", secret=SECRET,
                                        topics=["events"]))
        await agent.handle(incoming([event("e1", 1000, person(1))]))
        log: list = []

        async def attempted() -> bool:
            log[:] = await repo.deliveries(w.webhook_id)
            return bool(log) and log[0].status == "dead"

        deadline = time.monotonic() + 20
        while not await attempted():
            assert time.monotonic() < deadline, log
            await asyncio.sleep(0.1)
        assert log[0].http_status is None and "URL policy" in (log[0].error or ""), log[0]
        assert "internal address" in (log[0].error or "")
        assert receiver.deliveries == [] and receiver.items == []
