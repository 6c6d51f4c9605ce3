"""API routes of episodes, counters, webhooks (with the delivery log) and Telegram rules.

``routes`` is the table, installed and documented (OpenAPI) by ``connectors/api/app.py``. Access: viewers
read, operators write (the RouteTable defaults).

- ``GET /v1/episodes``: ``closed`` (true/false), ``camera``, ``watch_list``, ``dossier`` (the same names
  as the event filters), ``since``/``until`` (UNIX s; overlap with the episode's span), ``limit``,
  ``cursor`` (the previous page's ``next_cursor``). ``GET /v1/episodes/{id}`` adds ``event_ids``.
  ``POST /v1/episodes/{id}/acknowledge`` acknowledges the episode and every event in it.
- ``/v1/counters`` CRUD; ``GET /v1/counters/{id}/records``: ``since``, ``until``, optional ``step``
  (seconds: sums into buckets from ``since``; without it the stored windows are returned).
- ``/v1/webhooks`` CRUD (the secret is write-only); ``GET /v1/webhooks/{id}/deliveries`` (``status``:
  pending/delivered/dead, ``limit``).
- ``/v1/telegram-rules`` CRUD.
"""

from __future__ import annotations

import time
from typing import Literal

from aiohttp import web
from pydantic import Field

from connectors.api.auth import current_user
from connectors.api.core import ApiError, ApiModel, RouteTable, json_response, path_id, read_body, read_query
from connectors.api.state import state
from connectors.sql.notify_repo import (
    CounterRepository,
    EpisodeRepository,
    TelegramRepository,
    WebhookRepository,
    aggregate,
)
from schemas.messages import CounterRecord
from schemas.notify import (
    Counter,
    CounterIn,
    CounterPatch,
    TelegramRule,
    TelegramRuleIn,
    TelegramRulePatch,
    WebhookIn,
    WebhookPatch,
    WebhookView,
)

routes = RouteTable()
MAX_BUCKETS = 10_000


class EpisodeQuery(ApiModel):
    closed: bool | None = Field(None, description="true: closed only; false: open only.")
    camera: str | None = Field(None, max_length=128, description="Episodes that include this camera id.")
    watch_list: str | None = Field(None, max_length=128, description="Episodes that include this watch list id.")
    dossier: str | None = Field(None, max_length=128, description="Episodes matched to this dossier id.")
    since: float | None = Field(None, description="Episodes still running at or after this time (UNIX s).")
    until: float | None = Field(None, description="Episodes opened before this time (UNIX s).")
    cursor: float | None = Field(None, description="Page: the `next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=1000)


class RecordsQuery(ApiModel):
    since: float | None = None
    until: float | None = None
    step: float | None = Field(None, gt=0, description="Bucket size in seconds (requires since and until).")


class DeliveryQuery(ApiModel):
    status: Literal["pending", "delivered", "dead"] | None = None
    limit: int = Field(100, ge=1, le=1000)


def _engine(request: web.Request):  # type: ignore[no-untyped-def]
    return state(request).engine


# --- episodes ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/episodes", "List episodes (newest first)", "episodes", query=EpisodeQuery)
async def list_episodes(request: web.Request) -> web.Response:
    q = read_query(request, EpisodeQuery)
    items = await EpisodeRepository(_engine(request)).list(
        closed=q.closed, camera_id=q.camera, watch_list_id=q.watch_list, dossier_id=q.dossier,
        since=q.since, until=q.until, limit=q.limit, before=q.cursor)
    nxt = items[-1]["opened_at"] if len(items) == q.limit else None
    return json_response({"results": items, "next_cursor": nxt})


@routes.add("GET", "/v1/episodes/{id}", "One episode with its event ids", "episodes", errors=(404,))
async def get_episode(request: web.Request) -> web.Response:
    return json_response(await EpisodeRepository(_engine(request)).get(path_id(request)))


@routes.add("POST", "/v1/episodes/{id}/acknowledge", "Acknowledge an episode and all its events", "episodes",
            errors=(404,))
async def acknowledge_episode(request: web.Request) -> web.Response:
    user = current_user(request)
    return json_response(await EpisodeRepository(_engine(request)).acknowledge(path_id(request), user.username))


# --- counters ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/counters", "List counters", "counters")
async def list_counters(request: web.Request) -> web.Response:
    return json_response(await CounterRepository(_engine(request)).list_all())


@routes.add("POST", "/v1/counters", "Create a counter", "counters", body=CounterIn, response=Counter, status=201)
async def create_counter(request: web.Request) -> web.Response:
    body = await read_body(request, CounterIn)
    if not body.camera_ids and not body.camera_groups:
        raise ApiError(422, "a counter needs camera_ids or camera_groups",
                       [{"loc": ["camera_ids"], "msg": "empty"}])
    return json_response(await CounterRepository(_engine(request)).create(body), 201)


@routes.add("GET", "/v1/counters/{id}", "One counter", "counters", response=Counter, errors=(404,))
async def get_counter(request: web.Request) -> web.Response:
    return json_response(await CounterRepository(_engine(request)).get(path_id(request)))


@routes.add("PATCH", "/v1/counters/{id}", "Change a counter", "counters", body=CounterPatch, response=Counter,
            errors=(404,))
async def patch_counter(request: web.Request) -> web.Response:
    body = await read_body(request, CounterPatch)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return json_response(await CounterRepository(_engine(request)).update(path_id(request), changes))


@routes.add("DELETE", "/v1/counters/{id}", "Delete a counter and its records", "counters", status=204,
            errors=(404,))
async def delete_counter(request: web.Request) -> web.Response:
    await CounterRepository(_engine(request)).delete(path_id(request))
    return web.Response(status=204)


@routes.add("GET", "/v1/counters/{id}/records", "Counter records (time range, optional step)", "counters",
            query=RecordsQuery, errors=(404, 422))
async def counter_records(request: web.Request) -> web.Response:
    q = read_query(request, RecordsQuery)
    repo = CounterRepository(_engine(request))
    counter_id = path_id(request)
    await repo.get(counter_id)
    records: list[CounterRecord] = await repo.records(counter_id, q.since, q.until)
    if q.step is None:
        return json_response({"counter_id": counter_id,
                              "records": [r.model_dump(mode="json", exclude={"schema_version", "kind"})
                                          for r in records]})
    since = q.since if q.since is not None else (records[0].start if records else time.time())
    until = q.until if q.until is not None else time.time()
    if (until - since) / q.step > MAX_BUCKETS:
        raise ApiError(422, f"at most {MAX_BUCKETS} buckets: raise step", [{"loc": ["step"], "msg": "too small"}])
    return json_response({"counter_id": counter_id, "step": q.step,
                          "buckets": aggregate(records, since, until, q.step)})


# --- webhooks ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/webhooks", "List webhooks", "webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    return json_response([WebhookView.of(w) for w in await WebhookRepository(_engine(request)).list_all()])


@routes.add("POST", "/v1/webhooks", "Create a webhook", "webhooks", body=WebhookIn, response=WebhookView,
            status=201)
async def create_webhook(request: web.Request) -> web.Response:
    body = await read_body(request, WebhookIn)
    return json_response(WebhookView.of(await WebhookRepository(_engine(request)).create(body)), 201)


@routes.add("GET", "/v1/webhooks/{id}", "One webhook", "webhooks", response=WebhookView, errors=(404,))
async def get_webhook(request: web.Request) -> web.Response:
    return json_response(WebhookView.of(await WebhookRepository(_engine(request)).get(path_id(request))))


@routes.add("PATCH", "/v1/webhooks/{id}", "Change a webhook", "webhooks", body=WebhookPatch,
            response=WebhookView, errors=(404,))
async def patch_webhook(request: web.Request) -> web.Response:
    body = await read_body(request, WebhookPatch)
    changes = body.model_dump(exclude_unset=True)
    if "filters" in changes and body.filters is not None:
        changes["filters"] = body.filters
    changes = {k: v for k, v in changes.items() if v is not None or k == "max_attempts"}
    return json_response(WebhookView.of(await WebhookRepository(_engine(request)).update(path_id(request), changes)))


@routes.add("DELETE", "/v1/webhooks/{id}", "Delete a webhook (its delivery log stays)", "webhooks", status=204,
            errors=(404,))
async def delete_webhook(request: web.Request) -> web.Response:
    await WebhookRepository(_engine(request)).delete(path_id(request))
    return web.Response(status=204)


@routes.add("GET", "/v1/webhooks/{id}/deliveries", "The delivery log (newest first)", "webhooks",
            query=DeliveryQuery, errors=(404,))
async def list_deliveries(request: web.Request) -> web.Response:
    q = read_query(request, DeliveryQuery)
    repo = WebhookRepository(_engine(request))
    webhook_id = path_id(request)
    await repo.get(webhook_id)
    return json_response(await repo.deliveries(webhook_id, q.status, q.limit))


# --- Telegram ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/telegram-rules", "List Telegram notification rules", "telegram",
            )
async def list_rules(request: web.Request) -> web.Response:
    return json_response(await TelegramRepository(_engine(request)).list_all())


@routes.add("POST", "/v1/telegram-rules", "Create a Telegram notification rule", "telegram", body=TelegramRuleIn,
            response=TelegramRule, status=201)
async def create_rule(request: web.Request) -> web.Response:
    body = await read_body(request, TelegramRuleIn)
    return json_response(await TelegramRepository(_engine(request)).create(body), 201)


@routes.add("GET", "/v1/telegram-rules/{id}", "One Telegram rule", "telegram", response=TelegramRule,
            errors=(404,))
async def get_rule(request: web.Request) -> web.Response:
    return json_response(await TelegramRepository(_engine(request)).get(path_id(request)))


@routes.add("PATCH", "/v1/telegram-rules/{id}", "Change a Telegram rule", "telegram", body=TelegramRulePatch,
            response=TelegramRule, errors=(404,))
async def patch_rule(request: web.Request) -> web.Response:
    body = await read_body(request, TelegramRulePatch)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if body.filters is not None:
        changes["filters"] = body.filters
    return json_response(await TelegramRepository(_engine(request)).update(path_id(request), changes))


@routes.add("DELETE", "/v1/telegram-rules/{id}", "Delete a Telegram rule", "telegram", status=204, errors=(404,))
async def delete_rule(request: web.Request) -> web.Response:
    await TelegramRepository(_engine(request)).delete(path_id(request))
    return web.Response(status=204)
