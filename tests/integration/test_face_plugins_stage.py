"""Face plug-ins on the embedded broker, in the roles `facestream up` runs: the shipped frequent-visitors
plug-in enrols a person seen on three days through the real API (from events, and end to end from three
videos of a labelled camera through the whole pipeline); a plug-in that raises on a face dead-letters that
face and goes on, one whose activation fails is restarted, and neither stops the pipeline (the store sink
stores every event, the other plug-ins notice theirs)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from agents.face_plugins import PluginContext, PluginDetection, PluginFace, register_face_plugin
from ops.demo import synthesize_clip
from ops.harness import SPINE_ROLES, LocalPipeline
from pipeline.kafka import replay_topic
from schemas.messages import DeadLetter, FaceEvent, PluginNotice
from schemas.topics import DEAD_LETTER, EVENTS, PLUGIN_NOTICES
from tests.integration.conftest import settings_for
from tests.unit.notify_helpers import event, near, person

pytestmark = pytest.mark.integration

TOKEN = "plugin-test-admin-token"
DAY = 86400.0


class Explodes:
    """Notices every face, except that it raises on faces whose event id ends in 'boom'."""

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    def preprocess(self, face: PluginFace, labels: Mapping[str, str]) -> set[str]:
        return {"gender"}

    async def process(self, face: PluginFace, detection: PluginDetection, event: FaceEvent) -> list[PluginNotice]:
        if face.event_id.endswith("boom"):
            raise ValueError(f"cannot handle {face.event_id}")
        return [self.ctx.notice("seen", event, face.event_id)]


def _broken(ctx: PluginContext) -> Any:
    raise RuntimeError("this plug-in cannot start")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plugins_enrol_frequent_visitors_and_failures_never_stop_the_pipeline(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    register_face_plugin("explodes", Explodes)
    register_face_plugin("broken_at_start", _broken)
    port = _free_port()
    settings = settings_for(
        broker, tmp_path, api={"port": port, "admin_token": TOKEN},
        plugins={"enabled": ["frequent_visitors", "explodes", "broken_at_start"], "timeout_s": 10,
                 "options": {"frequent_visitors": {"watch_list": "frequent visitors",
                                                   "labels": {"zone": "entrance"}}}})
    base = f"http://127.0.0.1:{port}"
    now = time.time()
    who = person(42)
    thumb = cv2.imencode(".jpg", np.full((80, 80, 3), 128, np.uint8))[1].tobytes()

    def at(ident: str, t: float, descriptor: np.ndarray, **labels: str) -> FaceEvent:
        return event(ident, t, descriptor, camera="door", quality=0.9).model_copy(update={"labels": labels})

    first_days = [at("door:1:0", now - 2 * DAY, near(who, 0.97, 1), zone="entrance"),
                  at("door:2:0", now - 2 * DAY + 60, near(who, 0.97, 2), zone="entrance"),
                  at("door:3:boom", now - DAY, person(7), zone="entrance"),
                  at("yard:4:0", now - DAY, near(who, 0.97, 4), zone="yard"),  # another zone: not counted
                  at("door:5:0", now - DAY + 5, near(who, 0.97, 5), zone="entrance")]
    third_day = at("door:6:0", now - 10, near(who, 0.97, 6), zone="entrance")

    async def scenario() -> tuple[list[Any], list[Any], dict[str, Any], dict[str, Any], dict[str, int]]:
        notices: list[Any] = []
        dead: list[Any] = []
        pipeline = LocalPipeline(settings)
        async with pipeline.running(roles=("store", "plugins", "api")) as running:
            stop = asyncio.Event()
            readers = [asyncio.create_task(replay_topic(running.settings, PLUGIN_NOTICES, notices.append, stop)),
                       asyncio.create_task(replay_topic(running.settings, DEAD_LETTER, dead.append, stop))]
            assert running._resources is not None
            await _api_up(base)
            media = await running._resources.media()
            for e in [*first_days, third_day]:
                await asyncio.to_thread(media.put, e.thumbnail_key or "", thumb, "image/jpeg")
            for e in first_days:
                await running.producer.send(EVENTS, e.camera_id, e)
            await _until(lambda: len(notices) >= 4)  # explodes noticed the four faces it could handle
            await running.producer.send(EVENTS, third_day.camera_id, third_day)
            await _until(lambda: any(isinstance(n, PluginNotice) and n.plugin == "frequent_visitors"
                                     for n in notices))
            async with aiohttp.ClientSession(headers={"Authorization": f"Token {TOKEN}"}) as http:
                frequent = next(n for n in notices if n.plugin == "frequent_visitors")
                dossier = await (await http.get(f"{base}/v1/dossiers/{frequent.dossier_id}")).json()
                lists = await (await http.get(f"{base}/v1/watch-lists")).json()
                stored = {}
                for e in [*first_days, third_day]:  # the store sink stored every event, the failing one too
                    stored[e.event_id] = (await http.get(f"{base}/v1/events/{e.event_id}")).status
            await _until(lambda: len(notices) >= 6)
            restarts = dict((await running._resources.membership()).restarts)
            stop.set()
            await asyncio.gather(*readers)
        return notices, dead, dossier, {"lists": lists, "stored": stored}, restarts

    notices, dead, dossier, seen, restarts = asyncio.run(scenario())
    frequent = [n for n in notices if n.plugin == "frequent_visitors"]
    assert len(frequent) == 1 and frequent[0].event_id == third_day.event_id
    assert frequent[0].data["visits"] == 3 and frequent[0].data["enrolled"] is True
    assert frequent[0].labels == {"zone": "entrance"}
    [wl] = [w for w in seen["lists"]["results"] if w["name"] == "frequent visitors"]
    assert dossier["watch_lists"] == [wl["id"]] and len(dossier["faces"]) == 1  # enrolled from the event
    explodes = sorted(n.event_id for n in notices if n.plugin == "explodes")
    assert explodes == sorted(e.event_id for e in [*first_days, third_day] if not e.event_id.endswith("boom"))
    failed = [d for d in dead if isinstance(d, DeadLetter) and d.stage == "plugin.explodes"]
    assert len(failed) == 1 and failed[0].reason == "ValueError: cannot handle door:3:boom"
    assert EVENTS.decode(failed[0].payload).event_id == "door:3:boom"
    assert set(seen["stored"].values()) == {200}
    assert restarts.get("plugin.broken_at_start", 0) >= 1 and "plugin.explodes" not in restarts


async def _api_up(base: str, timeout_s: float = 120.0) -> None:
    """Until the API role answers (it opens its stores first: seconds under load)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{base}/v1/health") as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            await asyncio.sleep(0.2)


async def _until(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def test_frequent_visitor_end_to_end_from_three_videos_of_a_labelled_camera(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The whole path: the same person in three videos attributed to a labelled camera, on three different days
    (their start times), through decoder, detector, extractor, matcher, store and the plug-in, who enrols them
    through the API; the person is then recognised."""
    pytest.importorskip("skimage", reason="the synthesised clip needs scikit-image (the demo extra)")
    port = _free_port()
    settings = settings_for(
        broker, tmp_path, api={"port": port, "admin_token": TOKEN, "enrol_min_quality": 0.0},
        plugins={"enabled": ["frequent_visitors"],
                 "options": {"frequent_visitors": {"watch_list": "regulars", "labels": {"zone": "entrance"}}}})
    clip = tmp_path / "visit.avi"
    synthesize_clip(clip, seconds=1.5)
    now = time.time()

    async def scenario() -> tuple[list[Any], dict[str, Any], list[FaceEvent]]:
        notices: list[Any] = []
        pipeline = LocalPipeline(settings)
        async with pipeline.running(roles=(*SPINE_ROLES, "store", "plugins", "api")) as running:
            stop = asyncio.Event()
            reader = asyncio.create_task(replay_topic(running.settings, PLUGIN_NOTICES, notices.append, stop))
            await _api_up(base)
            for day in (2, 1, 0):
                await running.process_as(clip, f"visit-{day}", "door", labels={"zone": "entrance"},
                                         started_at=now - day * DAY - 60)
            await _until(lambda: bool(notices))
            async with aiohttp.ClientSession(headers={"Authorization": f"Token {TOKEN}"}) as http:
                dossier = await (await http.get(f"{base}/v1/dossiers/{notices[0].dossier_id}")).json()
            again = await running.process_as(clip, "visit-again", "door", labels={"zone": "entrance"})
            stop.set()
            await reader
        return notices, dossier, again.events

    base = f"http://127.0.0.1:{port}"
    notices, dossier, again = asyncio.run(scenario())
    assert len(notices) == 1 and notices[0].data["visits"] == 3 and notices[0].data["enrolled"] is True
    assert notices[0].labels == {"zone": "entrance"} and notices[0].camera_id == "door"
    assert len(dossier["faces"]) == 1
    assert again and all(e.labels == {"zone": "entrance"} for e in again)
    assert any(e.matched and e.dossier_id == dossier["id"] for e in again)  # recognised from then on
