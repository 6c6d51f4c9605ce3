"""What the notification sinks send, pure: filters, the stable webhook payload, Telegram captions.

Webhook payload (version 1, stable). Every delivery is a POST whose body is a JSON array of items::

    [{"version": 1, "type": "event" | "episode_open" | "episode_update" | "episode_close" | "counter_record",
      "id": "<item id, stable across retries and replays: receivers drop duplicates by it>",
      "data": {...}}]

- ``event``: the face event (``FaceEvent`` fields less ``descriptor``, ``schema_version`` and ``kind``);
  id = event id.
- ``episode_*``: the ``Episode`` (see schemas/messages.py); id = ``"{episode_id}:{change}:{event_count}"``.
- ``counter_record``: the ``CounterRecord``; id = ``"{counter_id}:{start}:{faces}:{final}"`` with ``start``
  written exactly (an integer for whole seconds, never rounded).

Wherever the data names a stored image (``thumbnail_key``, ``frame_key``, also inside an episode's events),
it also carries its absolute URL (``thumbnail_url``, ``frame_url``: ``api.public_url`` + ``/v1/media/<key>``;
fetch it with an API token).

Headers: the Standard Webhooks ones (``webhook-id``: the delivery id, the same on every retry;
``webhook-timestamp``; ``webhook-signature``), see ``connectors/webhook_client.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.attributes import AttributeFields, summarise
from schemas.messages import CounterRecord, EpisodeChanged, FaceEvent
from schemas.notify import NotifyFilters, WebhookTopic

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class Item:
    """One thing a sink may send, with the facets the filters look at."""

    type: str  # "event", "episode_open", "episode_update", "episode_close", "counter_record"
    topic: WebhookTopic  # the subscription it belongs to
    item_id: str
    data: dict[str, Any]
    camera_ids: tuple[str, ...] = ()
    camera_group: str | None = None
    matched: bool = False
    confidence: float = 0.0
    watch_list_ids: tuple[str, ...] = ()
    counter_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    face: AttributeFields | None = None  # the face's flat attributes (an episode: its best event's)

    def body(self) -> bytes:
        """The item's JSON object in the webhook payload."""
        return orjson.dumps({"version": PAYLOAD_VERSION, "type": self.type, "id": self.item_id, "data": self.data})


MediaUrl = Callable[[str], str]


def _no_urls(key: str) -> str:
    return f"/v1/media/{key}"


def with_media_urls(data: dict[str, Any], media_url: MediaUrl) -> dict[str, Any]:
    """``data`` with ``<name>_url`` beside every non-null ``<name>_key`` of a stored image, at any depth."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        out[k] = with_media_urls(v, media_url) if isinstance(v, dict) else v
        if k in ("thumbnail_key", "frame_key") and isinstance(v, str):
            out[k[:-4] + "_url"] = media_url(v)
    return out


def exact(x: float) -> str:
    """A number as an id part, exactly: ``1796151654`` for whole seconds, the shortest round-trip repr
    otherwise (``f"{x:g}"`` rounds to 6 digits: different windows collided)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def event_item(e: FaceEvent, media_url: MediaUrl = _no_urls) -> Item:
    data = with_media_urls(e.model_dump(mode="json", exclude={"descriptor", "schema_version", "kind"}), media_url)
    face = summarise(e.attributes)
    data.update(face.fields())
    return Item("event", "events", e.event_id, data, (e.camera_id,), e.camera_group, e.matched, e.confidence,
                tuple(e.watch_list_ids), face=face)


def episode_item(c: EpisodeChanged, media_url: MediaUrl = _no_urls) -> Item:
    ep = c.episode
    data = with_media_urls(ep.model_dump(mode="json", exclude={"schema_version"}), media_url)
    conf = ep.matched_event.confidence if ep.matched_event else ep.best_event.confidence
    topic: WebhookTopic = f"episode_{c.change}"  # type: ignore[assignment]
    return Item(topic, topic, f"{ep.episode_id}:{c.change}:{ep.event_count}", data, tuple(ep.camera_ids),
                ep.camera_group, ep.matched, conf, tuple(ep.watch_list_ids), face=ep.best_event)


def counter_item(r: CounterRecord) -> Item:
    data = r.model_dump(mode="json", exclude={"schema_version", "kind"})
    return Item("counter_record", "counter_records", f"{r.counter_id}:{exact(r.start)}:{r.faces}:{r.final}", data,
                tuple(r.camera_ids), counter_id=r.counter_id)


def item_of(message: object, media_url: MediaUrl = _no_urls) -> Item | None:
    """The item for a consumed message (None for end markers and other kinds); ``media_url`` makes a media
    key an absolute URL."""
    if isinstance(message, FaceEvent):
        return event_item(message, media_url)
    if isinstance(message, EpisodeChanged):
        return episode_item(message, media_url)
    if isinstance(message, CounterRecord):
        return counter_item(message)
    return None


def passes(f: NotifyFilters, item: Item) -> bool:
    """Whether ``item`` gets through the filters (empty lists: any). Counter records are filtered only by
    ``counter_ids`` and ``camera_ids``. Attribute conditions (gender, age, mask, emotion) need the face's
    attribute known: a rule on ``mask=false`` fires on faces classified as bare, never on unknown ones."""
    if item.counter_id is not None:
        if f.counter_ids and item.counter_id not in f.counter_ids:
            return False
        return not f.camera_ids or bool(set(f.camera_ids) & set(item.camera_ids))
    if f.camera_ids and not set(f.camera_ids) & set(item.camera_ids):
        return False
    if f.camera_groups and item.camera_group not in f.camera_groups:
        return False
    if (f.matched == "matched" and not item.matched) or (f.matched == "unmatched" and item.matched):
        return False
    if f.watch_list_ids and not (item.matched and set(f.watch_list_ids) & set(item.watch_list_ids)):
        return False
    if not f.admits(item.face):
        return False
    return not (f.min_confidence > 0 and (not item.matched or item.confidence < f.min_confidence))


def batch_body(bodies: list[bytes]) -> bytes:
    """A delivery body: the items' JSON objects as one JSON array."""
    return b"[" + b",".join(bodies) + b"]"


def backoff_s(attempt: int, base_s: float, cap_s: float = 100.0) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped at ``cap_s``."""
    return min(cap_s, base_s * 2.0 ** max(0, attempt - 1))


# -- Telegram ------------------------------------------------------------------------------------------


def person_key(e: FaceEvent) -> str:
    """Who an event shows, for the Telegram cooldown: the dossier, else the camera track."""
    return f"dossier:{e.dossier_id}" if e.matched and e.dossier_id else f"track:{e.camera_id}:{e.track_id}"


def caption(e: FaceEvent, watch_list_names: dict[str, str] | None = None, camera_name: str | None = None) -> str:
    """The photo caption: name, watch lists, camera, confidence, time (UTC)."""
    names = watch_list_names or {}
    who = e.dossier_name or e.dossier_id or "unknown" if e.matched else "Unmatched face"
    lists = ", ".join(names.get(w, w) for w in e.watch_list_ids) or "-"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e.timestamp))
    return (f"{who}\nWatch list: {lists}\nCamera: {camera_name or e.camera_id}\n"
            f"Confidence: {e.confidence:.2f}\nTime: {when}")
