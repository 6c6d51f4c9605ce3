"""Notification filters, payload items and helpers (agents/notify_rules.py)."""

from __future__ import annotations

import orjson

from agents.episode_rules import EpisodeBuilder
from agents.notify_rules import (
    backoff_s,
    batch_body,
    caption,
    counter_item,
    episode_item,
    event_item,
    passes,
    person_key,
)
from models.faces import confidences
from schemas.messages import CounterRecord
from schemas.notify import NotifyFilters
from tests.unit.notify_helpers import event, face_attributes, person

P = person(1)
M = event("m", 1000, P, dossier="d1", watch_lists=("wl1",), confidence=0.9, camera="c1", group="g1")
U = event("u", 1000, P, camera="c2", group="g2", confidence=0.3)


def test_filters():
    assert passes(NotifyFilters(), event_item(M)) and passes(NotifyFilters(), event_item(U))
    assert not passes(NotifyFilters(matched="matched"), event_item(U))
    assert not passes(NotifyFilters(matched="unmatched"), event_item(M))
    assert passes(NotifyFilters(camera_ids=["c1"]), event_item(M))
    assert not passes(NotifyFilters(camera_ids=["c1"]), event_item(U))
    assert passes(NotifyFilters(camera_groups=["g2"]), event_item(U))
    assert passes(NotifyFilters(watch_list_ids=["wl1"]), event_item(M))
    assert not passes(NotifyFilters(watch_list_ids=["wl2"]), event_item(M))
    assert not passes(NotifyFilters(watch_list_ids=["wl1"]), event_item(U))
    assert passes(NotifyFilters(min_confidence=0.85), event_item(M))
    assert not passes(NotifyFilters(min_confidence=0.95), event_item(M))
    rec = counter_item(CounterRecord(counter_id="k", start=0, end=60, faces=3, camera_ids=["c1"]))
    assert passes(NotifyFilters(matched="matched"), rec)  # only counter/camera filters apply
    assert not passes(NotifyFilters(counter_ids=["other"]), rec)


def test_attribute_filters_no_mask_at_the_entrance():
    bare = U.model_copy(update={"attributes": face_attributes("female", 31, mask=False, emotion="happy")})
    masked = U.model_copy(update={"attributes": face_attributes("male", 58, mask=True)})
    unknown = U  # no attribute models ran
    no_mask = NotifyFilters(mask=False)
    assert passes(no_mask, event_item(bare))
    assert not passes(no_mask, event_item(masked)) and not passes(no_mask, event_item(unknown))
    assert passes(NotifyFilters(mask=True), event_item(masked))
    assert passes(NotifyFilters(gender="female", age_max=40, emotion="happy"), event_item(bare))
    assert not passes(NotifyFilters(gender="female", age_min=35), event_item(bare))
    assert passes(NotifyFilters(age_min=50, age_max=65), event_item(masked))
    assert not passes(NotifyFilters(emotion="sad"), event_item(masked))
    assert event_item(bare).data["mask"] is False and event_item(bare).data["gender"] == "female"
    builder = EpisodeBuilder(confidences)
    changes = builder.add(masked.model_copy(update={"timestamp": 5000.0}), now=0)
    assert passes(NotifyFilters(mask=True), episode_item(changes[0]))
    assert not passes(no_mask, episode_item(changes[0]))


def test_payload_items_are_stable_and_documented():
    item = event_item(M)
    body = orjson.loads(batch_body([item.body(), event_item(U).body()]))
    assert [b["id"] for b in body] == ["m", "u"]
    assert body[0]["version"] == 1 and body[0]["type"] == "event"
    assert "descriptor" not in body[0]["data"] and body[0]["data"]["dossier_id"] == "d1"
    b = EpisodeBuilder(confidences)
    ch = b.add(M, now=0)[0]
    ep = episode_item(ch)
    assert ep.type == "episode_open" and ep.item_id == "ep:m:open:1" and ep.matched and ep.watch_list_ids == ("wl1",)
    assert episode_item(ch).body() == ep.body()


def test_backoff_doubles_and_caps():
    assert [backoff_s(n, 1.0) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 100, 100]
    assert backoff_s(3, 0.5, cap_s=1.5) == 1.5


def test_caption_and_person_key():
    text = caption(M, {"wl1": "VIP"}, "Lobby")
    assert text.splitlines() == ["name-d1", "Watch list: VIP", "Camera: Lobby", "Confidence: 0.90",
                                 "Time: 1970-01-01 00:16:40 UTC"]
    assert caption(U).startswith("Unmatched face")
    assert person_key(M) == "dossier:d1" and person_key(U) == "track:c2:1"


def test_counter_record_ids_are_exact():
    """Windows two seconds apart once both became ``1.79615e+09``, and the second was dropped as a duplicate."""
    a = counter_item(CounterRecord(counter_id="k", start=1796151654, end=1796151656, faces=1))
    b = counter_item(CounterRecord(counter_id="k", start=1796151656, end=1796151658, faces=1))
    assert a.item_id == "k:1796151654:1:False" and b.item_id == "k:1796151656:1:False"
    half = counter_item(CounterRecord(counter_id="k", start=1796151654.5, end=1796151655, faces=1))
    assert half.item_id == "k:1796151654.5:1:False"


def test_payloads_carry_absolute_media_urls():
    from pipeline.settings import ApiSettings

    api = ApiSettings(public_url="https://faces.example.com/base/")
    e = M.model_copy(update={"thumbnail_key": "thumbs/c1:1:0.jpg", "frame_key": "frames/c1:1:0.jpg"})
    data = event_item(e, api.media_url).data
    assert data["thumbnail_url"] == "https://faces.example.com/base/v1/media/thumbs/c1:1:0.jpg"
    assert data["frame_url"] == "https://faces.example.com/base/v1/media/frames/c1:1:0.jpg"
    ep = episode_item(EpisodeBuilder(confidences).add(e, now=0)[0], api.media_url).data
    assert ep["best_event"]["thumbnail_url"] == data["thumbnail_url"]
    assert ApiSettings(port=9000).media_url("a b.jpg") == "http://127.0.0.1:9000/v1/media/a%20b.jpg"
