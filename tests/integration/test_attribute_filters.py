"""Face attributes (gender, age, mask, emotion) on stored events and episodes: the API's fields and filters
on the real application (SQLite, Milvus Lite, local media), and a webhook rule on ``mask=false`` delivering to a
real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from agents.episode_rules import EpisodeBuilder
from connectors.api.app import build_app
from connectors.sql.episodes import EpisodeRepository
from connectors.sql.events import EventRepository
from models.faces import confidences
from ops.root import Resources, api_state, open_resources
from pipeline.settings import Settings
from schemas.messages import FaceEvent
from schemas.notify import NotifyFilters, TelegramRuleIn, WebhookIn
from tests.integration.test_telegram import FakeBotApi, telegram_sink
from tests.integration.test_webhooks import SECRET, running_receiver, sink
from tests.unit.notify_helpers import event, face_attributes, incoming, person, wait_for

TOKEN = "attr-admin"


def _faces() -> list[FaceEvent]:
    spec = [("bare-man", "male", 52.0, False, "neutral"), ("masked-man", "male", 61.0, True, "neutral"),
            ("bare-woman", "female", 29.0, False, "happy"), ("masked-woman", "female", 35.0, True, "sad")]
    out = []
    for i, (name, gender, age, mask, emotion) in enumerate(spec):
        e = event(name, 100 + i * 1000, person(i), camera="entrance")
        out.append(e.model_copy(update={"attributes": face_attributes(gender, age, mask, emotion)}))
    out.append(event("unknown", 5000, person(9), camera="entrance"))  # no attribute models ran
    return out


async def _ids(client: TestClient, path: str) -> list[str]:
    resp = await client.get(path, headers={"Authorization": f"Token {TOKEN}"})
    body = await resp.json()
    assert resp.status == 200, body
    return sorted(item["id"] for item in body["results"])


async def test_events_and_episodes_show_and_filter_attributes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api={"admin_token": TOKEN, "contract_checks": "fail"})
    async with open_resources(settings) as res:
        await _show_and_filter(res)


async def _show_and_filter(res: Resources) -> None:
    client = TestClient(TestServer(build_app(await api_state(res))))
    await client.start_server()
    try:
        engine = await res.sql()
        events = _faces()
        await EventRepository(engine, lambda k: k).upsert_many(events)
        builder = EpisodeBuilder(confidences)
        await EpisodeRepository(engine).save([c for e in events for c in builder.add(e, now=0)])

        one: dict[str, Any] = await (await client.get("/v1/events/masked-woman",
                                                      headers={"Authorization": f"Token {TOKEN}"})).json()
        assert (one["gender"], one["age"], one["mask"], one["emotion"]) == ("female", 35.0, True, "sad")
        assert one["attributes"]["mask"]["mask"] > 0.9 and one["liveness"] is None
        assert await _ids(client, "/v1/events?mask=false") == ["bare-man", "bare-woman"]
        assert await _ids(client, "/v1/events?mask=true&gender=female") == ["masked-woman"]
        assert await _ids(client, "/v1/events?age_min=50") == ["bare-man", "masked-man"]
        assert await _ids(client, "/v1/events?age_min=30&age_max=55") == ["bare-man", "masked-woman"]
        assert await _ids(client, "/v1/events?emotion=happy") == ["bare-woman"]
        assert len(await _ids(client, "/v1/events?camera=entrance")) == 5  # no filter: the unknown one too
        resp = await client.get("/v1/events?gender=robot", headers={"Authorization": f"Token {TOKEN}"})
        assert resp.status in (400, 422)  # a bad filter value is refused with a message

        assert await _ids(client, "/v1/episodes?mask=true") == ["ep:masked-man", "ep:masked-woman"]
        assert await _ids(client, "/v1/episodes?gender=male&mask=false") == ["ep:bare-man"]
        assert await _ids(client, "/v1/episodes?age_max=30") == ["ep:bare-woman"]
        episode = await (await client.get("/v1/episodes/ep:masked-man",
                                          headers={"Authorization": f"Token {TOKEN}"})).json()
        assert episode["mask"] is True and episode["best_event"]["gender"] == "male"
    finally:
        await client.close()


async def test_webhook_rule_no_mask_at_the_entrance_fires(tmp_path: Path) -> None:
    async with running_receiver() as receiver, sink(tmp_path, batch_max=10) as (agent, repo):
        await repo.create(WebhookIn(url=receiver.url, secret=SECRET, topics=["events"],
                                    filters=NotifyFilters(camera_ids=["entrance"], mask=False)))
        await agent.handle(incoming(_faces()))
        await wait_for(lambda: len(receiver.items) >= 2, 10)
        await asyncio.sleep(0.5)  # nothing more arrives
        assert sorted(i["id"] for i in receiver.items) == ["bare-man", "bare-woman"]
        assert all(i["data"]["mask"] is False for i in receiver.items)
        assert receiver.bad_signatures == 0


async def test_telegram_rule_no_mask_sends_an_alert(tmp_path: Path) -> None:
    async with FakeBotApi() as api, telegram_sink(tmp_path, api) as (agent, _media):
        await agent.repo.create(TelegramRuleIn(chat_id="77", filters=NotifyFilters(matched="any", mask=False,
                                                                                   gender="female")))
        await agent.handle(incoming(_faces()))
        await wait_for(lambda: len(api.messages) >= 1, 10)
        await asyncio.sleep(0.5)  # nothing more arrives
        assert [m["chat_id"] for m in api.messages] == ["77"]  # bare-woman only
