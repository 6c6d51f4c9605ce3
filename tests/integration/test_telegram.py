"""Telegram sink against a fake Bot API server on 127.0.0.1 (real HTTP, multipart sendPhoto), a real
SQLite store and the real local media store (no broker: the agent's ``handle`` is fed directly)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Self

from aiohttp import web
from pydantic import SecretStr

from agents.telegram import TelegramAgent, TelegramSender
from connectors.media import open_media_store
from connectors.sql.engine import open_sql
from connectors.sql.entities import CameraRepository, WatchListRepository
from connectors.sql.telegram import TelegramRepository
from connectors.telegram_client import TelegramClient
from pipeline.settings import Settings
from schemas.notify import NotifyFilters, TelegramRuleIn
from tests.unit.notify_helpers import event, incoming, person, wait_for

TOKEN = "123:abc"
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


class FakeBotApi:
    """Records sendPhoto/sendMessage calls; answers 429 (retry_after=1) to the first ``throttle`` calls."""

    def __init__(self, throttle: int = 0) -> None:
        self.messages: list[dict] = []
        self.throttled_at: list[float] = []
        self.throttle = throttle
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def send(self, request: web.Request) -> web.Response:
        assert request.match_info["token"] == TOKEN
        if self.throttle > 0:
            self.throttle -= 1
            self.throttled_at.append(time.monotonic())
            return web.json_response({"ok": False, "error_code": 429, "description": "Too Many Requests",
                                      "parameters": {"retry_after": 1}}, status=429)
        if request.match_info["method"] == "sendPhoto":
            form = await request.post()
            photo = form["photo"]
            self.messages.append({"chat_id": form["chat_id"], "caption": form["caption"],
                                  "photo": photo.file.read(), "at": time.monotonic()})
        else:
            body = await request.json()
            self.messages.append({"chat_id": str(body["chat_id"]), "caption": body["text"], "photo": None,
                                  "at": time.monotonic()})
        return web.json_response({"ok": True, "result": {"message_id": len(self.messages)}})

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@contextlib.asynccontextmanager
async def telegram_sink(tmp_path: Path, api: FakeBotApi):
    settings = Settings(data_dir=tmp_path, telegram={"bot_token": TOKEN, "api_base_url": f"http://127.0.0.1:{api.port}",
                                                     "cooldown_s": 60, "refresh_s": 0.1})
    engine = await open_sql(settings)
    media = open_media_store(settings)
    stop, wake = asyncio.Event(), asyncio.Event()
    async with TelegramClient(settings.telegram.api_base_url, SecretStr(TOKEN), 5, allow_private=True) as client:
        repo = TelegramRepository(engine)
        agent = TelegramAgent(settings=settings, repo=repo, watch_lists=WatchListRepository(engine),
                              cameras=CameraRepository(engine), wake=wake)
        sender = TelegramSender(settings=settings.telegram, repo=repo, client=client, media=media, wake=wake)
        task = asyncio.create_task(sender.run(stop))
        try:
            yield agent, media
        finally:
            stop.set()
            await task
            await engine.dispose()


async def test_one_message_per_person_per_cooldown_with_photo(tmp_path: Path) -> None:
    async with FakeBotApi() as api, telegram_sink(tmp_path, api) as (agent, media):
        media.put("thumbs/a0.jpg", JPEG, "image/jpeg")
        await agent.repo.create(TelegramRuleIn(chat_id="100"))  # default: matched only
        await agent.repo.create(TelegramRuleIn(chat_id="200", filters=NotifyFilters(watch_list_ids=["vip"])))
        p, q = person(1), person(2)
        batch = [event(f"a{i}", 1000 + i * 5, p, dossier="d1", watch_lists=("vip",), confidence=0.91)
                 for i in range(10)]  # 45 s of one person: one message per chat
        batch += [event("b0", 1002, q, dossier="d2", watch_lists=("staff",), confidence=0.8)]
        batch += [event(f"u{i}", 1003 + i, person(10 + i)) for i in range(3)]  # unmatched: no rule takes them
        await agent.handle(incoming(batch))
        await agent.handle(incoming(batch))  # a replay queues nothing more
        await agent.handle(incoming([event("a-late", 1070, p, dossier="d1", watch_lists=("vip",))]))  # cooldown over
        await wait_for(lambda: len(api.messages) >= 5, 10)
        await asyncio.sleep(0.5)
        sent = sorted((m["chat_id"], m["caption"].splitlines()[0]) for m in api.messages)
        assert sent == [("100", "name-d1"), ("100", "name-d1"), ("100", "name-d2"), ("200", "name-d1"),
                        ("200", "name-d1")]
        first = next(m for m in api.messages if m["chat_id"] == "100" and m["caption"].startswith("name-d1"))
        assert first["photo"] == JPEG
        assert "Watch list: vip" in first["caption"] and "Camera: cam1" in first["caption"]
        assert "Confidence: 0.91" in first["caption"] and "Time: 1970-01-01 00:16:40 UTC" in first["caption"]


async def test_retry_after_is_respected(tmp_path: Path) -> None:
    async with FakeBotApi(throttle=1) as api, telegram_sink(tmp_path, api) as (agent, _media):
        await agent.repo.create(TelegramRuleIn(chat_id="100"))
        await agent.handle(incoming([event("a", 1000, person(1), dossier="d1", confidence=0.9)]))
        await wait_for(lambda: len(api.messages) == 1, 10)
        assert api.messages[0]["at"] - api.throttled_at[0] >= 0.95
        assert api.messages[0]["photo"] is None  # no thumbnail stored: text message


async def test_the_bot_api_base_url_goes_through_the_url_policy(tmp_path: Path) -> None:
    """A base URL whose name resolves to loopback (``localhost``) while internal targets are not allowed: the
    sink does not start (it idles, saying why), and a client built anyway refuses at connect time (a name
    that resolves internal only later): the message fails at once, permanently, and nothing is sent."""
    from ops.root import Idle, open_resources, telegram

    async with FakeBotApi() as api:
        base = f"http://localhost:{api.port}"
        for url in (base, f"http://127.0.0.1:{api.port}", "ftp://example.com"):
            settings = Settings(data_dir=tmp_path, telegram={"bot_token": TOKEN, "api_base_url": url})
            async with open_resources(settings) as res:
                role = await telegram(res)
            assert isinstance(role, Idle) and "refused by the URL policy" in role.reason, (url, role)
        async with TelegramClient(base, SecretStr(TOKEN), 5) as client:
            result = await client.send_photo("42", "hello", None)
        assert not result.ok and result.permanent and "URL policy" in (result.error or ""), result
        assert api.messages == []
        # api.url_allow_private lifts it (what the other tests here use)
        async with TelegramClient(base, SecretStr(TOKEN), 5, allow_private=True) as client:
            assert (await client.send_photo("42", "hello", None)).ok
        assert [m["caption"] for m in api.messages] == ["hello"]
