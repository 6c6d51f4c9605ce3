"""API routes of episodes, counters, webhooks (with the delivery log) and Telegram rules.

Access: viewers read, operators write (the RouteTable defaults). Lists page as every list does (``limit``,
``cursor`` -> ``{"results", "next_cursor"}``).

- ``GET /v1/episodes``: ``closed`` (true/false), ``camera``, ``watch_list``, ``dossier`` (the same names
  as the event filters), ``since``/``until`` (UNIX s; overlap with the episode's span).
  ``GET /v1/episodes/{id}`` adds ``event_ids``; ``POST /v1/episodes/{id}/acknowledge`` acknowledges the
  episode and every event in it.
- ``/v1/counters`` CRUD; ``GET /v1/counters/{id}/records``: ``since``, ``until``, optional ``step``
  (seconds: sums into buckets from ``since``; without it the stored windows are returned).
- ``/v1/webhooks`` CRUD (the secret is write-only); ``GET /v1/webhooks/{id}/deliveries`` (``status``:
  pending/delivered/dead).
- ``/v1/telegram-rules`` CRUD.
"""

from __future__ import annotations

import math
import time
from typing import Literal

from aiohttp import web
from pydantic import Field

from connectors.api.auth import current_user
from connectors.api.core import RANK, ApiError, ApiModel, ListQuery, RouteTable, page, path_id
from connectors.api.state import state
from connectors.sql.base import InvalidCursorError, decode_cursor, encode_cursor
from connectors.sql.counters import aggregate
from connectors.url_policy import allowed
from schemas.api import EpisodeOut, Page
from schemas.attributes import AttributeFilters
from schemas.notify import (
    CounterIn,
    CounterOut,
    CounterPatch,
    CounterWindow,
    DeliveryOut,
    TelegramRuleIn,
    TelegramRuleOut,
    TelegramRulePatch,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)

routes = RouteTable()
MAX_BUCKETS = 10_000


class EpisodeQuery(ListQuery, AttributeFilters):
    """Episode filters; the attribute ones (``gender``, ``age_min``/``age_max``, ``mask``, ``emotion``) judge the
    episode by its best event."""

    closed: bool | None = Field(None, description="true: closed only; false: open only.")
    camera: str | None = Field(None, max_length=128, description="Episodes that include this camera id.")
    watch_list: str | None = Field(None, max_length=128, description="Episodes that include this watch list id.")
    dossier: str | None = Field(None, max_length=128, description="Episodes matched to this dossier id.")
    since: float | None = Field(None, description="Episodes still running at or after this time (UNIX s).")
    until: float | None = Field(None, description="Episodes opened before this time (UNIX s).")


class RecordsQuery(ApiModel):
    since: float | None = Field(None, description="Windows starting at or after this time (UNIX s).")
    until: float | None = Field(None, description="Windows starting before this time (UNIX s).")
    step: float | None = Field(None, gt=0, description="Bucket size in seconds: sums the windows into buckets "
                                                       "from `since`.")
    limit: int = Field(500, ge=1, le=MAX_BUCKETS, description="Page size.")
    cursor: str | None = Field(None, max_length=1024, description="`next_cursor` of the previous page.")


class DeliveryQuery(ListQuery):
    status: Literal["pending", "delivered", "dead"] | None = None


# --- episodes ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/episodes", "List episodes (newest first)", "episodes")
async def list_episodes(request: web.Request, query: EpisodeQuery) -> Page[EpisodeOut]:
    items, nxt = await state(request).episodes.list_page(
        closed=query.closed, camera_id=query.camera, watch_list_id=query.watch_list, dossier_id=query.dossier,
        since=query.since, until=query.until, limit=query.limit, cursor=query.cursor, attributes=query)
    return page(items, nxt)


@routes.add("GET", "/v1/episodes/{id}", "One episode with its event ids", "episodes")
async def get_episode(request: web.Request) -> EpisodeOut:
    return await state(request).episodes.get(path_id(request))


@routes.add("POST", "/v1/episodes/{id}/acknowledge", "Acknowledge an episode and all its events", "episodes")
async def acknowledge_episode(request: web.Request) -> EpisodeOut:
    user = current_user(request)
    return await state(request).episodes.acknowledge(path_id(request), user.username)


# --- counters ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/counters", "List counters", "counters")
async def list_counters(request: web.Request, query: ListQuery) -> Page[CounterOut]:
    items, nxt = await state(request).counters.list_page(query.limit, query.cursor)
    return page([CounterOut.of(c) for c in items], nxt)


@routes.add("POST", "/v1/counters", "Create a counter", "counters", status=201)
async def create_counter(request: web.Request, body: CounterIn) -> CounterOut:
    if not body.camera_ids and not body.camera_groups:
        raise ApiError(422, "a counter needs camera_ids or camera_groups",
                       [{"loc": ["camera_ids"], "msg": "empty"}])
    return CounterOut.of(await state(request).counters.create(body))


@routes.add("GET", "/v1/counters/{id}", "One counter", "counters")
async def get_counter(request: web.Request) -> CounterOut:
    return CounterOut.of(await state(request).counters.get(path_id(request)))


@routes.add("PATCH", "/v1/counters/{id}", "Change a counter", "counters")
async def patch_counter(request: web.Request, body: CounterPatch) -> CounterOut:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return CounterOut.of(await state(request).counters.update(path_id(request), changes))


@routes.add("DELETE", "/v1/counters/{id}", "Delete a counter and its records", "counters")
async def delete_counter(request: web.Request) -> None:
    await state(request).counters.delete(path_id(request))


def _cursor_start(cursor: str | None) -> float | None:
    if cursor is None:
        return None
    value = decode_cursor(cursor, arity=1)[0]
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidCursorError("invalid cursor")
    return float(value)


@routes.add("GET", "/v1/counters/{id}/records", "Counter windows in a time range, or sums over `step` seconds",
            "counters")
async def counter_records(request: web.Request, query: RecordsQuery) -> Page[CounterWindow]:
    repo = state(request).counters
    counter_id = path_id(request)
    await repo.get(counter_id)
    after = _cursor_start(query.cursor)
    if query.step is None:
        since = query.since if after is None else max(after, query.since or after)
        records = await repo.records(counter_id, since, query.until, limit=query.limit + 1)
        if after is not None:
            records = [r for r in records if r.start > after]
        more = len(records) > query.limit
        records = records[:query.limit]
        windows = [CounterWindow(**r.model_dump(exclude={"schema_version", "kind", "counter_id"})) for r in records]
        return page(windows, encode_cursor([records[-1].start]) if more and records else None)
    since = query.since if query.since is not None else time.time()
    until = query.until if query.until is not None else time.time()
    if (until - since) / query.step > MAX_BUCKETS:
        raise ApiError(422, f"at most {MAX_BUCKETS} buckets: raise step", [{"loc": ["step"], "msg": "too small"}])
    start = since if after is None else after
    end = min(until, start + query.step * query.limit)
    records = await repo.records(counter_id, start, end)
    buckets = [CounterWindow(**b) for b in aggregate(records, start, end, query.step)]
    return page(buckets, encode_cursor([end]) if end < until else None)


# --- webhooks ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/webhooks", "List webhooks", "webhooks")
async def list_webhooks(request: web.Request, query: ListQuery) -> Page[WebhookOut]:
    items, nxt = await state(request).webhooks.list_page(query.limit, query.cursor)
    return page([WebhookOut.of(w) for w in items], nxt)


@routes.add("POST", "/v1/webhooks", "Create a webhook", "webhooks", status=201)
async def create_webhook(request: web.Request, body: WebhookIn) -> WebhookOut:
    await allowed(body.url, "webhook", state(request).settings)
    return WebhookOut.of(await state(request).webhooks.create(body))


@routes.add("GET", "/v1/webhooks/{id}", "One webhook", "webhooks")
async def get_webhook(request: web.Request) -> WebhookOut:
    return WebhookOut.of(await state(request).webhooks.get(path_id(request)))


@routes.add("PATCH", "/v1/webhooks/{id}", "Change a webhook", "webhooks")
async def patch_webhook(request: web.Request, body: WebhookPatch) -> WebhookOut:
    await allowed(body.url, "webhook", state(request).settings)
    changes = body.model_dump(exclude_unset=True)
    if "filters" in changes and body.filters is not None:
        changes["filters"] = body.filters
    changes = {k: v for k, v in changes.items() if v is not None or k == "max_attempts"}
    return WebhookOut.of(await state(request).webhooks.update(path_id(request), changes))


@routes.add("DELETE", "/v1/webhooks/{id}", "Delete a webhook (its delivery log stays)", "webhooks")
async def delete_webhook(request: web.Request) -> None:
    await state(request).webhooks.delete(path_id(request))


@routes.add("GET", "/v1/webhooks/{id}/deliveries", "The delivery log (newest first)", "webhooks")
async def list_deliveries(request: web.Request, query: DeliveryQuery) -> Page[DeliveryOut]:
    repo = state(request).webhooks
    webhook_id = path_id(request)
    await repo.get(webhook_id)
    items, nxt = await repo.deliveries_page(webhook_id, query.status, query.limit, query.cursor)
    out = [DeliveryOut.of(d) for d in items]
    if RANK[current_user(request).role] < RANK["operator"]:  # why a delivery failed maps the network
        out = [d.model_copy(update={"error": None, "http_status": None}) for d in out]
    return page(out, nxt)


# --- Telegram ---------------------------------------------------------------------------------------------


@routes.add("GET", "/v1/telegram-rules", "List Telegram notification rules", "telegram")
async def list_rules(request: web.Request, query: ListQuery) -> Page[TelegramRuleOut]:
    items, nxt = await state(request).telegram_rules.list_page(query.limit, query.cursor)
    return page([TelegramRuleOut.of(r) for r in items], nxt)


@routes.add("POST", "/v1/telegram-rules", "Create a Telegram notification rule", "telegram", status=201)
async def create_rule(request: web.Request, body: TelegramRuleIn) -> TelegramRuleOut:
    return TelegramRuleOut.of(await state(request).telegram_rules.create(body))


@routes.add("GET", "/v1/telegram-rules/{id}", "One Telegram rule", "telegram")
async def get_rule(request: web.Request) -> TelegramRuleOut:
    return TelegramRuleOut.of(await state(request).telegram_rules.get(path_id(request)))


@routes.add("PATCH", "/v1/telegram-rules/{id}", "Change a Telegram rule", "telegram")
async def patch_rule(request: web.Request, body: TelegramRulePatch) -> TelegramRuleOut:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if body.filters is not None:
        changes["filters"] = body.filters
    return TelegramRuleOut.of(await state(request).telegram_rules.update(path_id(request), changes))


@routes.add("DELETE", "/v1/telegram-rules/{id}", "Delete a Telegram rule", "telegram")
async def delete_rule(request: web.Request) -> None:
    await state(request).telegram_rules.delete(path_id(request))
