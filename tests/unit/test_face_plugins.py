"""Face plug-ins without a broker: discovery, the contract as the stage applies it (extras, labels, sync and
async process, notices), failures dead-lettered per face, and the frequent-visitors example on its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from agents.face_plugins import (
    FacePluginAgent,
    FacePluginError,
    FrameLiveness,
    PluginContext,
    PluginDetection,
    PluginFace,
    check_enabled,
    find_face_plugin,
    notices_of,
    register_face_plugin,
)
from agents.frequent_visitors import FrequentVisitors, activate
from connectors.api_client import ApiClientError
from pipeline.settings import load_settings
from pipeline.stage import Incoming
from schemas.messages import DeadLetter, FaceEvent, PluginNotice
from schemas.topics import DEAD_LETTER, EVENTS, PLUGIN_NOTICES
from tests.conftest import FACES_DIR
from tests.unit.notify_helpers import event, near, person

DAY = 86400.0
T0 = 1_700_000_000.0


class FakeApi:
    """An in-memory stand-in for ctx.api: records calls, answers dossier creation and enrolment."""

    def __init__(self, unknown_first: int = 0, down_first: int = 0) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.unknown_first = unknown_first  # enrolment answers 422 unknown_reference this many times first
        self.down_first = down_first  # the API does not answer this many calls first

    async def get(self, path: str, params: dict[str, str | int | float] | None = None) -> Any:
        self.calls.append(("GET", path, params))
        if self.down_first:
            self.down_first -= 1
            raise ApiClientError("GET", path, 0, "ClientConnectorError: connection refused")
        return {"results": [{"id": "wl-0", "name": "other"}], "next_cursor": None}

    async def post(self, path: str, json: Any = None) -> Any:
        self.calls.append(("POST", path, json))
        if path in ("/v1/dossiers", "/v1/watch-lists"):
            return {"id": f"{path[4]}{len(self.calls)}"}
        if self.unknown_first:
            self.unknown_first -= 1
            raise ApiClientError("POST", path, 422, "face: unknown reference 'event:x'")
        return {"id": "f1"}

    async def patch(self, path: str, json: Any = None) -> Any:
        return {}

    async def delete(self, path: str) -> Any:
        return None


def _labelled(e: FaceEvent, **labels: str) -> FaceEvent:
    return e.model_copy(update={"labels": labels, "attributes": {
        "gender": {"male": 0.9, "female": 0.1}, "age": {"years": 41.0}}})


def _items(events: list[FaceEvent]) -> list[Incoming]:
    return [Incoming(EVENTS, e.camera_id, e, 0, i, 0) for i, e in enumerate(events)]


def _agent(activate_fn: Any, name: str = "probe", timeout_s: float = 2.0, **options: Any) -> FacePluginAgent:
    settings = load_settings({"plugins": {"timeout_s": timeout_s}})
    return FacePluginAgent(settings=settings, activate=activate_fn,
                           ctx=PluginContext(name=name, options=options, api=FakeApi()))


class Probe:
    """Wants what ``want`` says for faces from the entrance; raises on events whose id ends in 'boom'."""

    def __init__(self, ctx: PluginContext, want: set[str]) -> None:
        self.ctx, self.want = ctx, want
        self.seen: list[tuple[str, dict[str, str], PluginDetection]] = []
        self.thread: int | None = None
        self.closed = False

    def preprocess(self, face: PluginFace, labels: Mapping[str, str]) -> set[str]:
        return self.want if labels.get("zone") == "entrance" else set()

    def process(self, face: PluginFace, detection: PluginDetection, event: FaceEvent) -> list[PluginNotice]:
        self.thread = threading.get_ident()
        if event.event_id.endswith("boom"):
            raise RuntimeError("the plug-in broke on this face")
        self.seen.append((face.event_id, dict(event.labels), detection))
        return [self.ctx.notice("seen", event, face.event_id, data={"n": len(self.seen)})]

    def shutdown(self) -> None:
        self.closed = True


def test_the_shipped_plugin_is_found_through_its_entry_point() -> None:
    activate_fn = find_face_plugin("frequent_visitors")
    assert activate_fn is activate  # the entry point names the module; its activate is used
    with pytest.raises(FacePluginError, match=r"unknown face plug-in 'nope'.*frequent_visitors"):
        check_enabled(load_settings({"plugins": {"enabled": ["frequent_visitors", "nope"]}}))


async def test_extras_labels_notices_and_a_blocking_process_off_the_loop() -> None:
    probes: list[Probe] = []

    def make(ctx: PluginContext) -> Probe:
        probes.append(Probe(ctx, {"descriptor", "gender", "age", "mask"}))
        return probes[-1]

    agent = _agent(make)
    await agent.start()
    events = [_labelled(event("c:1:0", T0, person(1)), zone="entrance"),
              _labelled(event("c:2:0", T0, person(2)), zone="car park")]  # not interested: process not called
    out = await agent.handle(_items(events))
    probe = probes[0]
    assert [s[0] for s in probe.seen] == ["c:1:0"] and probe.seen[0][1] == {"zone": "entrance"}
    detection = probe.seen[0][2]
    assert detection.gender == "male" and detection.age == 41.0 and detection.emotion is None
    assert detection.mask is None  # asked for, not computed by the pipeline for this face: None
    assert detection.descriptor is not None and detection.descriptor.shape == (128,)
    assert probe.thread not in (None, threading.get_ident())  # a plain def ran in a worker thread
    assert [(o.topic, o.key) for o in out] == [(PLUGIN_NOTICES, "probe")]
    notice = notices_of(out)[0]
    assert notice.notice_id == "probe:seen:c:1:0" and notice.labels == {"zone": "entrance"}
    assert notice.data == {"n": 1}
    await agent.stop()
    assert probe.closed


async def test_a_raising_plugin_dead_letters_that_face_and_goes_on() -> None:
    agent = _agent(lambda ctx: Probe(ctx, {"descriptor"}))
    await agent.start()
    events = [_labelled(event(f"c:{i}:{'boom' if i == 1 else 0}", T0 + i, person(i)), zone="entrance")
              for i in range(3)]
    out = await agent.handle(_items(events))
    assert [o.topic for o in out] == [PLUGIN_NOTICES, DEAD_LETTER, PLUGIN_NOTICES]
    dead = out[1].message
    assert isinstance(dead, DeadLetter) and dead.stage == "plugin.probe" and dead.offset == 1
    assert dead.reason == "RuntimeError: the plug-in broke on this face"
    assert EVENTS.decode(dead.payload).event_id == "c:1:boom"  # the face itself, replayable
    later = await agent.handle(_items([_labelled(event("c:9:0", T0, person(9)), zone="entrance")]))
    assert len(notices_of(later)) == 1  # the stage keeps going


async def test_a_slow_plugin_times_out_per_face_and_bad_answers_are_dead_lettered() -> None:
    class Slow:
        def preprocess(self, face: PluginFace, labels: Mapping[str, str]) -> set[str]:
            return {"liveness"} if face.event_id != "bad-extra" else {"beard"}

        async def process(self, face: PluginFace, detection: PluginDetection, event: FaceEvent) -> Any:
            if face.event_id == "slow":
                await asyncio.sleep(5)
            return ["not a notice"] if face.event_id == "wrong" else None

    agent = _agent(lambda ctx: Slow(), name="slow", timeout_s=0.2)
    await agent.start()
    out = await agent.handle(_items([event(i, T0, person(1)) for i in ("slow", "wrong", "bad-extra", "fine")]))
    reasons = [o.message.reason for o in out if isinstance(o.message, DeadLetter)]
    assert len(reasons) == 3 and "plugins.timeout_s (0.2 s)" in reasons[0]
    assert "not a PluginNotice" in reasons[1] and "unknown extras ['beard']" in reasons[2]


async def test_an_activate_that_returns_no_plugin_fails_the_start() -> None:
    agent = _agent(lambda ctx: object())
    with pytest.raises(FacePluginError, match="no preprocess"):
        await agent.start()
    register_face_plugin("registered-probe", lambda ctx: Probe(ctx, set()))
    assert "registered-probe" in check_enabled(load_settings({"plugins": {"enabled": ["registered-probe"]}}))


# --- the frequent-visitors example --------------------------------------------------------------------------

def _visitors(api: FakeApi | None = None, **options: Any) -> FrequentVisitors:
    plugin = activate(PluginContext(name="frequent_visitors", options=options, api=api or FakeApi()))
    assert isinstance(plugin, FrequentVisitors)
    return plugin


async def _offer(plugin: FrequentVisitors, e: FaceEvent) -> list[PluginNotice]:
    face = PluginFace.of(e)
    if not plugin.preprocess(face, e.labels):
        return []
    return await plugin.process(face, PluginDetection(frozenset({"descriptor"}), np.asarray(e.descriptor)), e)


async def test_frequent_visitor_noticed_once_on_the_third_day() -> None:
    plugin = _visitors()
    who, other = person(7), person(8)
    seen = [(f"a{i}", T0 + day * DAY + i * 60, near(who, 0.97, i)) for day in (0, 0, 0, 1, 1) for i in range(2)]
    notices: list[PluginNotice] = []
    for ident, t, d in seen:  # two days, many sightings: not yet frequent
        notices += await _offer(plugin, event(ident + str(t), t, d))
    notices += await _offer(plugin, event("b0", T0, other))  # someone else, once
    assert notices == []
    third = await _offer(plugin, event("a-third", T0 + 2 * DAY + 5, near(who, 0.96, 99)))
    assert len(third) == 1 and third[0].notice == "frequent_visitor"
    assert third[0].data["visits"] == 3 and third[0].data["enrolled"] is False
    assert third[0].notice_id == f"frequent_visitors:frequent_visitor:{seen[0][0]}{seen[0][1]}"
    assert await _offer(plugin, event("a-fourth", T0 + 3 * DAY, near(who, 0.96, 98))) == []  # once
    assert len(plugin.visitors) == 2


async def test_frequent_visitors_window_labels_matched_and_options() -> None:
    plugin = _visitors(min_visits=2, window_s=3 * DAY, labels={"zone": "entrance"})
    who = person(3)
    at_door = lambda ident, t: event(ident, t, near(who, 0.98, int(t) % 97)).model_copy(
        update={"labels": {"zone": "entrance"}})
    assert await _offer(plugin, at_door("x0", T0)) == []
    assert await _offer(plugin, at_door("x1", T0 + 5 * DAY)) == []  # the first visit fell out of the window
    parked = event("x2", T0 + 6 * DAY, who)  # another camera: not interested
    assert await _offer(plugin, parked) == []
    known = at_door("x3", T0 + 6 * DAY).model_copy(update={"matched": True, "dossier_id": "d1"})
    assert await _offer(plugin, known) == []  # matched faces are known already
    assert len(await _offer(plugin, at_door("x4", T0 + 6 * DAY))) == 1
    with pytest.raises(FacePluginError, match="min_visits"):
        _visitors(min_visits=0)
    with pytest.raises(FacePluginError, match="extra"):
        _visitors(colour="red")


async def test_frequent_visitor_enrolled_through_the_api_after_the_event_is_stored() -> None:
    api = FakeApi(unknown_first=2)  # the store sink has not stored the event yet, twice
    plugin = _visitors(api, min_visits=1, watch_list="frequent visitors")
    [notice] = await _offer(plugin, event("cam:5:0", T0, person(5)))
    assert notice.dossier_id == "d3" and notice.data["enrolled"] is True
    assert api.calls[:2] == [("GET", "/v1/watch-lists", {"limit": 200}),  # not there: created
                             ("POST", "/v1/watch-lists", {"name": "frequent visitors"})]
    assert api.calls[2][:2] == ("POST", "/v1/dossiers") and api.calls[2][2]["watch_lists"] == ["w2"]
    assert api.calls[-1] == ("POST", "/v1/dossiers/d3/faces", {"face": "event:cam:5:0"})
    assert len(api.calls) == 6
    [again] = await _offer(plugin, event("cam:5:1", T0, person(15)))
    assert again.dossier_id == "d7" and len(api.calls) == 8  # the watch list's id is remembered
    starting = FakeApi(down_first=3)  # the API role is still opening its stores
    [notice] = await _offer(_visitors(starting, min_visits=1, watch_list="wl"), event("cam:7:0", T0, person(7)))
    assert notice.data["enrolled"] is True and [c[0] for c in starting.calls[:4]] == ["GET"] * 4
    failing = _visitors(FakeApi(unknown_first=100), min_visits=1, watch_list="wl", enrol_wait_s=0.3)
    [notice] = await _offer(failing, event("cam:6:0", T0, person(6)))
    assert notice.data["enrolled"] is False and "unknown reference" in str(notice.data["error"])


# --- liveness on request ------------------------------------------------------------------------------------

class DictMedia:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def get_file(self, key: str, path: Any) -> None:
        raise NotImplementedError


async def test_liveness_is_computed_on_request_only_where_the_pipeline_did_not() -> None:
    asked: list[str] = []

    async def scorer(e: FaceEvent) -> float | None:
        asked.append(e.event_id)
        return None if e.event_id == "no-frame" else 0.9

    probes: list[Probe] = []

    def make(ctx: PluginContext) -> Probe:
        probes.append(Probe(ctx, {"liveness"}))
        return probes[-1]

    settings = load_settings({})
    agent = FacePluginAgent(settings=settings, activate=make, liveness=scorer,
                            ctx=PluginContext(name="live", options={}, api=FakeApi()))
    await agent.start()
    scored = _labelled(event("scored", T0, person(1)), zone="entrance")
    scored = scored.model_copy(update={"attributes": {"liveness": {"live": 0.2}}})  # models.event_liveness on
    events = [_labelled(event(i, T0, person(1)), zone="entrance") for i in ("unscored", "no-frame")]
    await agent.handle(_items([scored, *events]))
    assert asked == ["unscored", "no-frame"]  # the pipeline's own score is used where there is one
    assert [(s[0], s[2].liveness) for s in probes[0].seen] == [("scored", 0.2), ("unscored", 0.9),
                                                               ("no-frame", None)]


@pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"test media not found at {FACES_DIR}")
async def test_frame_liveness_scores_the_stored_frame_with_the_real_model(face_models: Any) -> None:
    import cv2

    image = cv2.imread(str(FACES_DIR / "obama.jpg"))
    det = face_models.detect([image])[0][0]
    media = DictMedia({"frames/door/1.jpg": cv2.imencode(".jpg", image)[1].tobytes()})

    async def models() -> Any:
        return face_models

    async def store() -> Any:
        return media

    live = FrameLiveness(models, store)
    at_door = event("door:1:0", T0, person(1)).model_copy(
        update={"frame_key": "frames/door/1.jpg", "bbox": tuple(float(v) for v in det.bbox)})
    score = await live(at_door)
    assert score is not None and score >= face_models.settings.liveness_threshold
    assert await live(at_door.model_copy(update={"frame_key": "frames/door/purged.jpg"})) is None
    assert await live(at_door.model_copy(update={"frame_key": None})) is None
