"""Every stage agent's handle() without a broker or SQL: in-memory fakes of its ports (agents/ports.py), the
real models and the real calibration. The spine runs frame -> face -> descriptor -> event on a real portrait;
the sinks take those events."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from agents.counters import CountersAgent
from agents.detector import DetectorAgent, encode_jpeg
from agents.episodes import EpisodesAgent
from agents.extractor import ExtractorAgent
from agents.matcher import MatcherAgent
from agents.matching import Gallery
from agents.store_sink import StoreSink
from agents.telegram import TelegramAgent
from models.faces import FaceModels, confidences
from ops.harness import dossier_id_for, gallery_changes
from pipeline.settings import Settings
from pipeline.stage import Incoming, Output
from schemas.base import Message
from schemas.messages import (
    CameraStatus,
    CounterRecord,
    DescribedFace,
    Episode,
    EpisodeChanged,
    EpisodeStateRecord,
    Face,
    FaceEvent,
    Frame,
    StreamEnd,
    VideoProgress,
)
from schemas.notify import Counter, TelegramRule
from schemas.topics import (
    CAMERA_STATUS,
    COUNTER_RECORDS,
    DESCRIPTORS,
    EPISODE_STATE,
    EPISODES,
    EVENTS,
    FACES,
    FRAMES,
    TopicSpec,
)
from tests.conftest import FACES_DIR
from tests.unit.notify_helpers import event, incoming, person

SETTINGS = Settings()
VIDEO = "v1"
CAMERA = f"video:{VIDEO}"


def batch(topic: TopicSpec, messages: Sequence[Message]) -> list[Incoming]:
    return [Incoming(topic, CAMERA, m, 0, n, 0) for n, m in enumerate(messages)]


def messages(outputs: list[Output], topic: TopicSpec) -> list[Message]:
    return [o.message for o in outputs if o.topic is topic]


class MemoryMedia:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = data

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def get_file(self, key: str, path: Path) -> None:
        path.write_bytes(self.objects[key])


# ---------------------------------------------------------------- the spine, on a real portrait

need_faces = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"test media not found at {FACES_DIR}")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    if not FACES_DIR.is_dir():
        pytest.skip(f"test media not found at {FACES_DIR}")
    image = cv2.imread(str(FACES_DIR / "obama.jpg"))
    assert image is not None
    return image


def frames_of(image: np.ndarray, n: int) -> list[Message]:
    h, w = image.shape[:2]
    jpeg = encode_jpeg(image)
    out: list[Message] = [Frame(camera_id=CAMERA, frame_no=i, timestamp=1000.0 + i * 0.1, offset_s=i * 0.1,
                                width=w, height=h, jpeg=jpeg, video_id=VIDEO) for i in range(n)]
    return [*out, StreamEnd(camera_id=CAMERA, video_id=VIDEO, frames_total=n)]


@need_faces
async def test_spine_detector_extractor_matcher(face_models: FaceModels, portrait: np.ndarray) -> None:
    media = MemoryMedia()
    detector = DetectorAgent(settings=SETTINGS, models=face_models, media=media)
    faces_out = await detector.handle(batch(FRAMES, frames_of(portrait, 3)))
    faces = messages(faces_out, FACES)
    assert [type(m) for m in faces] == [Face, StreamEnd]  # one track, posted when the file ends; end last
    face = faces[0]
    assert isinstance(face, Face) and face.video_id == VIDEO
    assert face.thumbnail_key in media.objects and face.frame_key in media.objects

    extractor = ExtractorAgent(settings=SETTINGS, models=face_models)
    described = messages(await extractor.handle(batch(FACES, faces)), DESCRIPTORS)
    assert isinstance(described[0], DescribedFace) and isinstance(described[1], StreamEnd)
    assert abs(float(np.linalg.norm(described[0].descriptor)) - 1.0) < 1e-3

    gallery = Gallery(confidences, SETTINGS.matcher.threshold)
    for change in gallery_changes(face_models, {"Barack Obama": portrait}):
        gallery.apply(change)
    matcher = MatcherAgent(settings=SETTINGS, gallery=gallery)
    events = messages(await matcher.handle(batch(DESCRIPTORS, described)), EVENTS)
    assert isinstance(events[0], FaceEvent) and isinstance(events[1], StreamEnd)
    assert events[0].matched and events[0].dossier_id == dossier_id_for("Barack Obama")
    assert events[0].confidence >= SETTINGS.matcher.threshold


@need_faces
async def test_detector_skips_stale_live_frames_and_counts_them(face_models: FaceModels, portrait: np.ndarray) -> None:
    """A detector that fell behind its live camera analyses only frames younger than ``live_max_age_s``: the
    stale ones are dropped (reported as ``detector_behind``), so realtime mode alerts on a current frame."""
    settings = Settings(detector={"best_face_mode": "realtime", "live_max_age_s": 1.0})
    detector = DetectorAgent(settings=settings, models=face_models, media=MemoryMedia())
    h, w = portrait.shape[:2]
    jpeg, now = encode_jpeg(portrait), time.time()
    live = [Frame(camera_id="cam", session=1_700_000_000_000, frame_no=i, timestamp=t, width=w, height=h,
                  jpeg=jpeg) for i, t in enumerate((now - 5.0, now - 3.0, now))]
    faces = messages(await detector.handle([Incoming(FRAMES, "cam", f, 0, n, 0) for n, f in enumerate(live)]),
                     FACES)
    assert [(type(f), f.frame_no) for f in faces] == [(Face, 2)]  # the track's first face: the current frame
    [status] = messages(await detector.tick(time.time()), CAMERA_STATUS)
    assert isinstance(status, CameraStatus)
    assert (status.frames_detected, status.faces_posted, status.frames_dropped, status.drops) == (
        1, 1, 2, {"detector_behind": 2})
    # offline files are never skipped, however old their timestamps (the spine test above: timestamp 1000 s)


async def test_matcher_unknown_face_is_an_unmatched_event() -> None:
    gallery = Gallery(confidences, SETTINGS.matcher.threshold)
    matcher = MatcherAgent(settings=SETTINGS, gallery=gallery)
    face = Face(face_id="cam:1:0", camera_id="cam", track_id=1, seq=0, frame_no=0, timestamp=0.0,
                bbox=(0, 0, 10, 10), landmarks=((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)), det_score=0.9, quality=0.8)
    item = DescribedFace(face=face, descriptor=[float(x) for x in person(1)])
    [out] = await matcher.handle(batch(DESCRIPTORS, [item]))
    assert isinstance(out.message, FaceEvent) and not out.message.matched and out.key == "cam"


@need_faces
async def test_a_frame_only_tracked_is_never_decoded_in_full(face_models: FaceModels, portrait: np.ndarray,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """At 30 fps and the default 0.1 s interval one frame in three is detected; the other two are only tracked,
    and need no more than the reduced decode their colour signature reads (``decode_preview``)."""
    import agents.detector as detector_module

    decoded: list[int] = []
    full = detector_module.decode_jpeg
    monkeypatch.setattr(detector_module, "decode_jpeg", lambda data: decoded.append(len(data)) or full(data))
    detector = DetectorAgent(settings=SETTINGS, models=face_models, media=MemoryMedia())
    h, w = portrait.shape[:2]
    jpeg = encode_jpeg(portrait)
    frames = [Frame(camera_id=CAMERA, frame_no=i, timestamp=1000.0 + i / 30, offset_s=i / 30, width=w, height=h,
                    jpeg=jpeg, video_id=VIDEO) for i in range(6)]
    faces = messages(await detector.handle(batch(FRAMES, [*frames, StreamEnd(camera_id=CAMERA, video_id=VIDEO,
                                                                             frames_total=6)])), FACES)
    assert len(decoded) == 2  # frames 0 and 3
    assert [type(f) for f in faces] == [Face, StreamEnd]


# ---------------------------------------------------------------- the sinks


class MemoryEvents:
    def __init__(self) -> None:
        self.rows: dict[str, FaceEvent] = {}
        self.vectors: dict[str, list[float]] = {}
        self.progress: list[VideoProgress] = []
        self.done: dict[str, int] = {}

    async def upsert_many(self, events: Sequence[FaceEvent]) -> None:
        self.rows.update((e.event_id, e) for e in events)

    async def upsert_events(self, events: Sequence[FaceEvent]) -> None:
        self.vectors.update((e.event_id, e.descriptor) for e in events)

    async def apply_progress(self, p: VideoProgress) -> bool:
        self.progress.append(p)
        return True

    async def mark_done(self, ident: str, frames_total: int) -> bool:
        self.done[ident] = frames_total
        return True


async def test_store_sink_stores_events_vectors_and_video_progress() -> None:
    store = MemoryEvents()
    purged: list[int] = []

    async def retention() -> None:
        purged.append(1)

    sink = StoreSink(events=store, vectors=store, videos=store, retention=retention)
    events = [event("a", 0, person(1), video_id=VIDEO), event("b", 1, person(2), video_id=VIDEO)]
    progress = VideoProgress(video_id=VIDEO, camera_id=CAMERA, status="processing", frames_done=1, frames_total=2)
    items = [*incoming(events), *batch(EVENTS, [progress, StreamEnd(camera_id=CAMERA, video_id=VIDEO,
                                                                   frames_total=2)])]
    assert await sink.handle(items) == [] and await sink.handle(items) == []  # replay: the same rows
    assert sorted(store.rows) == sorted(store.vectors) == ["a", "b"]
    assert store.progress == [progress, progress] and store.done == {VIDEO: 2}
    await sink.tick(sink._next_purge)  # retention due: one pass in the background
    assert sink._purge is not None
    await sink._purge
    assert purged == [1]
    await sink.stop()


class MemoryEpisodes:
    def __init__(self) -> None:
        self.saved: dict[str, tuple[Episode, list[str]]] = {}

    async def save(self, changes: Iterable[EpisodeChanged]) -> None:
        """The latest state of each episode; its event ids accumulate (a change lists the new ones)."""
        for e, ids in ((c.episode, c.event_ids) for c in changes):
            known = self.saved.get(e.episode_id, (e, []))[1]
            self.saved[e.episode_id] = (e, known + [i for i in ids if i not in known])


async def test_episodes_agent_opens_and_closes_one_episode_per_person() -> None:
    repo = MemoryEpisodes()
    agent = EpisodesAgent(settings=SETTINGS, repo=repo, similarity=confidences)
    p = person(1)
    events = [event(f"e{i}", i, p, dossier="d1", confidence=0.9, video_id=VIDEO) for i in range(3)]
    out = await agent.handle([*incoming(events), *batch(EVENTS, [StreamEnd(camera_id=CAMERA, video_id=VIDEO)])])
    changes = messages(out, EPISODES)
    assert all(isinstance(c, EpisodeChanged) for c in changes)
    assert {c.change for c in changes if isinstance(c, EpisodeChanged)} >= {"open", "close"}
    assert all(isinstance(s, EpisodeStateRecord) for s in messages(out, EPISODE_STATE))
    [(episode, ids)] = repo.saved.values()
    assert episode.closed and ids == ["e0", "e1", "e2"]


class MemoryCounters:
    def __init__(self, *counters: Counter) -> None:
        self.counters = list(counters)
        self.records: list[CounterRecord] = []

    async def list_all(self) -> list[Counter]:
        return self.counters

    async def save_records(self, records: Iterable[CounterRecord]) -> None:
        self.records.extend(records)

    async def open_records(self, since: float) -> list[CounterRecord]:
        return []


async def test_counters_agent_counts_the_cameras_it_is_given() -> None:
    repo = MemoryCounters(Counter(counter_id="c1", camera_ids=["cam1"], interval_s=60.0))
    agent = CountersAgent(settings=SETTINGS, repo=repo)
    await agent.start()
    events = [event("a", 1000, person(1)), event("b", 1001, person(2)), event("x", 1002, person(3), camera="cam2")]
    out = await agent.handle(incoming(events))
    records = messages(out, COUNTER_RECORDS)
    assert records and all(isinstance(r, CounterRecord) and r.counter_id == "c1" for r in records)
    assert repo.records == records
    assert max(r.faces for r in records if isinstance(r, CounterRecord)) == 2


class MemoryTelegram:
    def __init__(self, *rules: TelegramRule) -> None:
        self.rules = list(rules)
        self.queued: list[tuple[str, str, str, str | None, str, float]] = []

    async def list_all(self) -> list[TelegramRule]:
        return self.rules

    async def enqueue(self, messages: list[tuple[str, str, str, str | None, str, float]], cooldown_s: float) -> int:
        self.queued.extend(messages)
        return len(messages)


class Names:
    def __init__(self, **names: str) -> None:
        self.items = [type("N", (), {"id": k, "name": v})() for k, v in names.items()]

    async def list_all(self) -> list[object]:
        return self.items


async def test_telegram_agent_queues_a_captioned_message_per_rule() -> None:
    outbox = MemoryTelegram(TelegramRule(rule_id="r1", chat_id="100"), TelegramRule(rule_id="r2", chat_id="200",
                                                                                    active=False))
    agent = TelegramAgent(settings=SETTINGS, repo=outbox, watch_lists=Names(vip="VIPs"),  # type: ignore[arg-type]
                          cameras=Names(cam1="Lobby"))  # type: ignore[arg-type]
    events = [event("a", 1000, person(1), dossier="d1", watch_lists=("vip",), confidence=0.91),
              event("u", 1001, person(2))]  # unmatched: the default rule takes matched faces only
    assert await agent.handle(incoming(events)) == []
    [(message_id, chat, text, thumb, _person, when)] = outbox.queued
    assert (message_id, chat, thumb, when) == ("100:a", "100", "thumbs/a.jpg", 1000)
    assert "VIPs" in text and "Lobby" in text and agent.wake.is_set()
