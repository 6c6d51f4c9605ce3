"""Entities and API bodies of counters, webhooks, Telegram rules and webhook deliveries (helper-4).

Stored in SQL (migrations ``connectors/sql/migrations/01xx_*.sql``), served by
``connectors/api/routes_notify.py``. Times are UNIX seconds (UTC).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from schemas.api import IdList
from schemas.attributes import AttributeFilters

MAX_NAME = 256
MAX_URL = 2048
MAX_SECRET = 256

WebhookTopic = Literal["events", "episode_open", "episode_update", "episode_close", "counter_records"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NotifyFilters(_Body, AttributeFilters):
    """What a webhook or a Telegram rule lets through. Empty lists mean "any". The attribute conditions
    (``gender``, ``age_min``/``age_max``, ``mask``, ``emotion``) apply to events and to episodes (their best
    event): ``{"mask": false}`` is the anti-COVID "no mask at the entrance" rule."""

    camera_ids: IdList = Field(default_factory=list)
    camera_groups: IdList = Field(default_factory=list)
    watch_list_ids: IdList = Field(default_factory=list, description="Only items matched to one of these.")
    matched: Literal["any", "matched", "unmatched"] = "any"
    min_confidence: float = Field(0.0, ge=0, le=1, description="Only items at least this confident (matched ones).")
    counter_ids: IdList = Field(default_factory=list, description="Counter records: only these counters.")


# -- counters ------------------------------------------------------------------------------------


class CounterIn(_Body):
    name: str = Field("", max_length=MAX_NAME)
    camera_ids: IdList = Field(default_factory=list, description="Cameras counted (or use camera_groups).")
    camera_groups: IdList = Field(default_factory=list, description="Camera groups counted.")
    interval_s: float = Field(60.0, gt=0, le=86400, description="Length of a counting window.")
    active: bool = True


class CounterPatch(_Body):
    name: str | None = Field(None, max_length=MAX_NAME)
    camera_ids: IdList | None = None
    camera_groups: IdList | None = None
    interval_s: float | None = Field(None, gt=0, le=86400)
    active: bool | None = None


class Counter(CounterIn):
    counter_id: str
    created_at: float = 0.0


# -- webhooks ------------------------------------------------------------------------------------


class WebhookIn(_Body):
    url: str = Field(pattern=r"^https?://", max_length=MAX_URL, description="Receiver URL (POST, JSON array body).")
    secret: str = Field("", max_length=MAX_SECRET,
                        description="HMAC-SHA256 key of the X-Facestream-Signature header ('' : unsigned).")
    topics: list[WebhookTopic] = Field(default_factory=lambda: list[WebhookTopic](["events"]), min_length=1,
                                       max_length=5)
    filters: NotifyFilters = Field(default_factory=NotifyFilters)
    active: bool = True
    max_attempts: int | None = Field(None, ge=1, le=100, description="Overrides webhooks.max_attempts.")


class WebhookPatch(_Body):
    url: str | None = Field(None, pattern=r"^https?://", max_length=MAX_URL)
    secret: str | None = Field(None, max_length=MAX_SECRET)
    topics: list[WebhookTopic] | None = Field(None, min_length=1, max_length=5)
    filters: NotifyFilters | None = None
    active: bool | None = None
    max_attempts: int | None = Field(None, ge=1, le=100)


class Webhook(WebhookIn):
    webhook_id: str
    created_at: float = 0.0


class Delivery(_Body):
    """One POST of a batch to a webhook, as the delivery log shows it."""

    delivery_id: str
    webhook_id: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int = 0
    item_ids: list[str] = Field(default_factory=list)
    created_at: float
    last_attempt_at: float | None = None
    http_status: int | None = None
    error: str | None = None


class OutboxItem(NamedTuple):
    """One payload item for one webhook's outbox (the webhooks stage -> SQL)."""

    webhook_id: str
    item_id: str
    body: bytes  # the item's JSON object


class PendingDelivery(_Body):
    """A delivery waiting to be POSTed, with its body (the JSON array of its items)."""

    delivery: Delivery
    body: bytes


# -- Telegram ------------------------------------------------------------------------------------


class TelegramRuleIn(_Body):
    name: str = Field("", max_length=MAX_NAME)
    chat_id: str = Field(min_length=1, max_length=MAX_NAME, description="Telegram chat id (or @channelname).")
    filters: NotifyFilters = Field(default_factory=lambda: NotifyFilters(matched="matched"))
    active: bool = True


class TelegramRulePatch(_Body):
    name: str | None = Field(None, max_length=MAX_NAME)
    chat_id: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    filters: NotifyFilters | None = None
    active: bool | None = None


class TelegramRule(TelegramRuleIn):
    rule_id: str
    created_at: float = 0.0


class QueuedMessage(NamedTuple):
    """A Telegram message the Telegram stage queues, subject to the chat's cooldown for the person."""

    message_id: str  # "{chat id}:{event id}"
    chat_id: str
    caption: str
    thumbnail_key: str | None
    person_key: str
    event_time: float


class OutboxMessage(_Body):
    """One Telegram message in the outbox (``telegram_outbox``): queued by the Telegram stage, sent by its
    sender. ``id`` is ``"{chat id}:{event id}"``."""

    id: str
    chat_id: str
    caption: str
    thumbnail_key: str | None
    status: Literal["pending", "sent", "failed"]
    attempts: int
    created_at: float
    next_attempt_at: float
    error: str | None


# -- API views: every resource's key is ``id`` --------------------------------------------------


class CounterOut(CounterIn):
    id: str
    created_at: float

    @classmethod
    def of(cls, c: Counter) -> CounterOut:
        return cls(id=c.counter_id, **c.model_dump(exclude={"counter_id"}))


class CounterWindow(_Body):
    """Faces counted in ``[start, end)``: a stored window, or a bucket summed over ``step`` seconds."""

    start: float
    end: float
    faces: int
    matched: int
    unmatched: int
    camera_ids: list[str] = Field(default_factory=list, description="Cameras that saw faces (stored windows).")
    final: bool | None = Field(None, description="Stored windows: no more updates will come (null for buckets).")


class WebhookOut(_Body):
    """A webhook as the API shows it: the secret is never returned."""

    id: str
    url: str
    has_secret: bool
    topics: list[WebhookTopic]
    filters: NotifyFilters
    active: bool
    max_attempts: int | None
    created_at: float

    @classmethod
    def of(cls, w: Webhook) -> WebhookOut:
        return cls(id=w.webhook_id, url=w.url, has_secret=bool(w.secret), topics=w.topics,
                   filters=w.filters, active=w.active, max_attempts=w.max_attempts, created_at=w.created_at)


class DeliveryOut(_Body):
    """One POST of a batch to a webhook (the ``webhook-id`` header it was sent with is ``id``)."""

    id: str
    webhook_id: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    item_ids: list[str]
    created_at: float
    last_attempt_at: float | None
    http_status: int | None
    error: str | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(id=d.delivery_id, **d.model_dump(exclude={"delivery_id"}))


class TelegramRuleOut(TelegramRuleIn):
    id: str
    created_at: float

    @classmethod
    def of(cls, r: TelegramRule) -> TelegramRuleOut:
        return cls(id=r.rule_id, **r.model_dump(exclude={"rule_id"}))
