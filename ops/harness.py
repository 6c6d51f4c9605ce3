"""``LocalPipeline``: the spine running in this process on a broker (the embedded one by default), with an
events collector. The demo, the end-to-end tests and the benchmarks drive it the way an integrator drives
the deployed system: gallery changes and video jobs in, events out."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiokafka import TopicPartition

from agents.enrol import portrait_descriptor
from models.faces import FaceModels
from ops.root import Resources, open_resources, serve
from ops.stack import broker_for
from pipeline.kafka import AsyncProducer, make_consumer, provision_topics, replay_topic, topic_name
from pipeline.settings import Settings
from schemas.messages import (
    CameraChanged,
    DossierChanged,
    DossierFace,
    Face,
    FaceEvent,
    Frame,
    GalleryChange,
    MemberReport,
    StreamEnd,
    VideoJob,
    VideoProgress,
    WatchListChanged,
)
from schemas.topics import (
    CAMERAS,
    CORE_TOPICS,
    EVENTS,
    FACES,
    FRAMES,
    GALLERY,
    STAGE_MEMBERS,
    VIDEO_JOBS,
    VIDEO_STATUS,
)

SPINE_ROLES = ("decoder", "detector", "extractor", "matcher")


class VideoFailedError(RuntimeError):
    """The decoder reported the video failed (unreadable, no decodable frame, gone); the message says why."""


@dataclass
class VideoResult:
    events: list[FaceEvent] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0


def dossier_id_for(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:12]


def gallery_changes(models: FaceModels, people: dict[str, np.ndarray], watch_list: str = "demo") -> list[GalleryChange]:
    """A watch list and one dossier per person (name -> BGR portrait)."""
    changes = [GalleryChange(watch_list=WatchListChanged(watch_list_id=watch_list, name=watch_list))]
    for name, image in people.items():
        did = dossier_id_for(name)
        changes.append(GalleryChange(dossier=DossierChanged(
            dossier_id=did, name=name, watch_list_ids=[watch_list],
            faces=[DossierFace(face_id=f"{did}-0", descriptor=portrait_descriptor(models, image).tolist())])))
    return changes


class LocalPipeline:
    def __init__(self, settings: Settings, on_event: Callable[[FaceEvent], None] | None = None,
                 on_progress: Callable[[VideoProgress], None] | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self.on_progress = on_progress
        self.events: list[FaceEvent] = []
        self._ends: dict[str, asyncio.Future[int]] = {}
        self._producer: AsyncProducer | None = None
        self._resources: Resources | None = None

    @contextlib.asynccontextmanager
    async def running(self, roles: tuple[str, ...] = SPINE_ROLES) -> AsyncIterator[LocalPipeline]:
        """The roles running on this process's resources (``ops.root``); the harness shares its producer."""
        async with broker_for(self.settings) as live:
            self.settings = live
            await asyncio.to_thread(provision_topics, live, CORE_TOPICS)
            async with open_resources(live, client_id="facestream-harness") as res:
                self._resources = res
                self._producer = await res.producer()
                stop = asyncio.Event()
                tasks = [asyncio.create_task(replay_topic(live, EVENTS, self._collect, stop)),
                         asyncio.create_task(replay_topic(live, VIDEO_STATUS, self._status, stop))]
                if roles:
                    tasks.append(asyncio.create_task(serve(res, roles, stop, restart=False)))
                try:
                    yield self
                finally:
                    stop.set()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    self._producer = self._resources = None

    @property
    def producer(self) -> AsyncProducer:
        assert self._producer is not None, "use `async with pipeline.running()`"
        return self._producer

    async def enrol(self, people: dict[str, np.ndarray], models: FaceModels | None = None) -> None:
        if models is None:
            assert self._resources is not None, "use `async with pipeline.running()`"
            models = await self._resources.face_models()
        changes = await asyncio.to_thread(gallery_changes, models, people)
        for change in changes:
            key = change.watch_list.watch_list_id if change.watch_list else change.dossier.dossier_id  # type: ignore[union-attr]
            await self.producer.send(GALLERY, key, change)

    async def add_camera(self, camera: CameraChanged) -> None:
        await self.producer.send(CAMERAS, camera.camera_id, camera)

    async def process(self, video: Path, video_id: str, timeout_s: float = 600) -> VideoResult:
        """Submit a file as a video job and wait until its StreamEnd reaches the events topic; raises
        ``VideoFailedError`` as soon as the decoder reports it failed."""
        return await self.process_as(video, video_id, f"video:{video_id}", timeout_s)

    async def process_as(self, video: Path, video_id: str, camera_id: str, timeout_s: float = 600, *,
                         labels: dict[str, str] | None = None, started_at: float | None = None) -> VideoResult:
        """``process`` with the frames published under a given camera id (with that camera's ``labels``, and
        the video's first frame at ``started_at``, UNIX s: event times follow it)."""
        future = self._ends[video_id] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        path = await asyncio.to_thread(video.resolve)
        await self.producer.send(VIDEO_JOBS, video_id, VideoJob(video_id=video_id, path=str(path), camera_id=camera_id,
                                                                labels=labels or {}, started_at=started_at))
        frames = await asyncio.wait_for(future, timeout_s)
        elapsed = time.perf_counter() - started
        return VideoResult([e for e in self.events if e.video_id == video_id], frames, elapsed)

    def _status(self, update: VideoProgress) -> None:
        """A failed video ends its wait at once (its frames never reach a StreamEnd)."""
        future = self._ends.get(update.video_id)
        if update.status == "failed" and future is not None and not future.done():
            future.set_exception(VideoFailedError(f"video {update.video_id} failed: {update.error or 'no reason'}"))
        if self.on_progress:
            self.on_progress(update)

    def _collect(self, message: object) -> None:
        if isinstance(message, FaceEvent):
            self.events.append(message)
            if self.on_event:
                self.on_event(message)
        elif isinstance(message, StreamEnd) and message.video_id in self._ends:
            future = self._ends[message.video_id]
            if not future.done():
                future.set_result(message.frames_total)


class DetectorWatch:
    """Who detects which camera, read from the topics (no group, from the start): the partition that carries a
    camera's frames, the faces posted per camera, and each detector process's frames partitions as it last
    reported them on stage-members (``pid -> partitions``). The failover test and bench kill the owner.

    ``await watch.run(stop)`` until ``stop`` is set; the topics must exist (provisioned) before it starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.frames_topic = topic_name(settings, FRAMES)
        self.frames_partition: dict[str, int] = {}
        self.faces: dict[str, list[str]] = {}
        self.members: dict[str, MemberReport] = {}

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings, [], None)
        await consumer.start()
        try:
            specs = {topic_name(self.settings, s): s for s in (FRAMES, FACES, STAGE_MEMBERS)}
            while any(consumer.partitions_for_topic(name) is None for name in specs):
                await consumer.force_metadata_update()  # a fresh client may not know the topics yet
                await asyncio.sleep(0.1)
            consumer.assign([TopicPartition(name, p) for name in specs
                             for p in sorted(consumer.partitions_for_topic(name) or ())])
            await consumer.seek_to_beginning()
            while not stop.is_set():
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    for record in records:
                        self._see(tp.partition, specs[tp.topic].decode(record.value))
        finally:
            await consumer.stop()

    def _see(self, partition: int, message: object) -> None:
        if isinstance(message, Frame):
            self.frames_partition.setdefault(message.camera_id, partition)
        elif isinstance(message, Face):
            self.faces.setdefault(message.camera_id, []).append(message.face_id)
        elif isinstance(message, MemberReport):
            self.members[message.client_id] = message

    def detectors(self) -> dict[int, set[int]]:
        """pid -> the frames partitions that detector process reported last (a killed process's last report
        stays: see ``owner``)."""
        return {r.pid: {p for t, p in r.partitions if t == self.frames_topic}
                for r in self.members.values() if r.client_id.startswith("detector@")}

    def owner(self, camera_id: str) -> int | None:
        """The pid of the detector that owns the camera's frames partition now: of the reports that list it,
        the latest (a killed owner's report is older than its successor's). None: not known yet."""
        partition = self.frames_partition.get(camera_id)
        claims = [r for r in self.members.values() if r.client_id.startswith("detector@")
                  and (self.frames_topic, partition) in {tuple(p) for p in r.partitions}]
        return max(claims, key=lambda r: r.timestamp).pid if claims else None
