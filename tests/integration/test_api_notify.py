"""API routes of episodes, counters, webhooks and Telegram rules (connectors/api/routes_notify.py) on the real
application (SQLite, Milvus Lite, local media; no broker needed for these routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from agents.episode_rules import EpisodeBuilder
from connectors.api.app import build_app
from connectors.sql.counters import CounterRepository
from connectors.sql.episodes import EpisodeRepository
from connectors.sql.events import EventRepository
from connectors.sql.webhooks import WebhookRepository
from models.faces import confidences
from ops.root import Resources, api_state, open_resources
from pipeline.settings import Settings
from schemas.messages import CounterRecord
from tests.unit.notify_helpers import event, person

TOKEN = "notify-admin"


async def call(client: TestClient, method: str, path: str, status: int, **kwargs: Any) -> Any:
    resp = await client.request(method, path, headers={"Authorization": f"Token {TOKEN}"}, **kwargs)
    body = await resp.json() if resp.content_type == "application/json" else await resp.read()
    assert resp.status == status, (resp.status, body)
    return body


async def test_notify_routes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api={"admin_token": TOKEN, "contract_checks": "fail",
                                                "url_allow_private": True})
    async with open_resources(settings) as res:
        await _routes(res)


async def _routes(res: Resources) -> None:
    client = TestClient(TestServer(build_app(await api_state(res))))
    await client.start_server()
    try:
        engine = await res.sql()
        # episodes: stored by the episodes stage, listed / filtered / acknowledged here
        evs = [event("e1", 100, person(1), camera="c1", dossier="d1", watch_lists=("wl",), confidence=0.9),
               event("e2", 101, person(1), camera="c2"), event("x", 102, person(2), camera="c1")]
        await EventRepository(engine, lambda k: k).upsert_many(evs)
        b = EpisodeBuilder(confidences)
        await EpisodeRepository(engine).save([c for e in evs for c in b.add(e, now=0)])
        page = await call(client, "GET", "/v1/episodes?closed=false", 200)
        assert [e["id"] for e in page["results"]] == ["ep:x", "ep:e1"]
        assert [e["id"] for e in (await call(client, "GET", "/v1/episodes?watch_list=wl", 200))["results"]] \
            == ["ep:e1"]
        assert (await call(client, "GET", "/v1/episodes?camera=c2&since=50&until=150", 200))["results"][0][
            "event_count"] == 2
        acked = await call(client, "POST", "/v1/episodes/ep:e1/acknowledge", 200)
        assert acked["acknowledged"] and acked["event_ids"] == ["e1", "e2"]
        assert (await call(client, "GET", "/v1/events/e2", 200))["acknowledged"]
        await call(client, "GET", "/v1/episodes/nope", 404)

        # counters
        await call(client, "POST", "/v1/counters", 422, json={"name": "empty"})
        c = await call(client, "POST", "/v1/counters", 201, json={"name": "door", "camera_ids": ["c1"],
                                                                   "interval_s": 60})
        await CounterRepository(engine).save_records([
            CounterRecord(counter_id=c["id"], start=0, end=60, faces=2, final=True),
            CounterRecord(counter_id=c["id"], start=60, end=120, faces=1),
            CounterRecord(counter_id=c["id"], start=240, end=300, faces=4)])
        recs = await call(client, "GET", f"/v1/counters/{c['id']}/records?since=0&until=300", 200)
        assert [r["faces"] for r in recs["results"]] == [2, 1, 4] and recs["next_cursor"] is None
        first = await call(client, "GET", f"/v1/counters/{c['id']}/records?since=0&until=300&limit=2", 200)
        rest = await call(client, "GET", f"/v1/counters/{c['id']}/records?limit=2&cursor={first['next_cursor']}", 200)
        assert [r["start"] for r in first["results"] + rest["results"]] == [0, 60, 240]
        agg = await call(client, "GET", f"/v1/counters/{c['id']}/records?since=0&until=360&step=120", 200)
        assert [b["faces"] for b in agg["results"]] == [3, 0, 4]
        assert (await call(client, "PATCH", f"/v1/counters/{c['id']}", 200, json={"name": "gate"}))["name"] \
            == "gate"
        listed = await call(client, "GET", "/v1/counters", 200)
        assert [x["id"] for x in listed["results"]] == [c["id"]] and listed["next_cursor"] is None

        # webhooks: the secret is write-only
        w = await call(client, "POST", "/v1/webhooks", 201, json={
            "url": "http://127.0.0.1:9/hook", "secret": "k", "topics": ["events", "episode_close"],
            "filters": {"matched": "matched", "min_confidence": 0.8}})
        assert w["has_secret"] and "secret" not in w
        await call(client, "POST", "/v1/webhooks", 422, json={"url": "ftp://x", "topics": ["events"]})
        await call(client, "POST", "/v1/webhooks", 422, json={"url": "http://x", "topics": ["nonsense"]})
        patch = {"active": False, "filters": {"camera_ids": ["c1"]}}
        p = await call(client, "PATCH", f"/v1/webhooks/{w['id']}", 200, json=patch)
        assert not p["active"] and p["filters"]["camera_ids"] == ["c1"] and p["has_secret"]
        await WebhookRepository(engine).enqueue([(w["id"], "i1", b"{}")], queue_max=0)  # overflow -> dead
        log = await call(client, "GET", f"/v1/webhooks/{w['id']}/deliveries?status=dead", 200)
        assert log["results"][0]["item_ids"] == ["i1"] and log["results"][0]["error"] == "queue overflow"
        await call(client, "DELETE", f"/v1/webhooks/{w['id']}", 204)
        await call(client, "GET", f"/v1/webhooks/{w['id']}", 404)

        # Telegram rules
        r = await call(client, "POST", "/v1/telegram-rules", 201, json={"chat_id": "42",
                                                                          "filters": {"watch_list_ids": ["wl"]}})
        assert r["filters"]["watch_list_ids"] == ["wl"]
        r = await call(client, "PATCH", f"/v1/telegram-rules/{r['id']}", 200, json={"chat_id": "43"})
        assert r["chat_id"] == "43" and r["filters"]["watch_list_ids"] == ["wl"]
        assert len((await call(client, "GET", "/v1/telegram-rules", 200))["results"]) == 1
        await call(client, "DELETE", f"/v1/telegram-rules/{r['id']}", 204)

        # access: no token -> 401
        resp = await client.get("/v1/episodes")
        assert resp.status == 401
    finally:
        await client.close()
