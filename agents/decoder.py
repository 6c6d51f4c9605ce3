"""Decoder agent: camera streams and video files -> JPEG frames on the frames topic.

Two inputs, one consumer group: the ``cameras`` changelog (never committed: on every assignment the
owner replays its partitions from the start and decodes the active cameras found there, so a camera
moves to another decoder when this one dies) and ``video-jobs`` (one file at a time, committed when the
file is fully published). Every blocking source call (open, read, close, media-store copy, the URL check's
name lookup) runs in the decoder's own pool (``source_io``, ``decoder.source_threads``), never in the
default executor that inference and the API use: a camera that hangs costs one of its threads for at most
``decoder.open_timeout_s`` / ``read_timeout_s``, and a network camera that never answers is given up by an
asyncio probe before any thread or OpenCV's process-wide open lock is taken (``connectors.stream_probe``).
Before every open a camera's URL is checked against the URL
policy again (``connectors.url_policy``: a camera stored before the policy, or a policy tightened since, is
refused and shows ``failed`` with the reason). Live sources reconnect with capped, jittered
back-off; each opening is a stream session (its open time in ms, carried in every frame, so ids never
repeat across reconnects, restarts or moves) and each camera's health goes to ``camera-status``;
files are read as fast as the detector keeps up (at most ``decoder.max_in_flight`` frames ahead of the
detector group's committed offset on the partition).

A file used as a camera plays like one: one frame every ``1 / decoder.target_fps`` s (never faster than the
file's own rate) against absolute deadlines (``next_due``: a late wake-up is made up by the next wait, a stall
is not caught up by a burst), and at its clean end it reopens at once for the next pass (a new stream session,
on the same schedule); a live source that ends or fails, or a file that gave no frame or failed to read,
reopens after the back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from agents.camera_health import StreamHealth, mask_url, reconnect_delay
from agents.ports import Clock, MediaReader
from connectors.camera_health import CameraHealthTable
from connectors.stream_probe import ProbeError, probe_stream, probed
from connectors.url_policy import UnresolvableError, UrlPolicyError, check_url
from pipeline import metrics
from pipeline.kafka import AsyncProducer, group_id, make_consumer, topic_name
from pipeline.membership import Membership
from pipeline.settings import DecoderSettings, Settings
from schemas.base import SchemaError
from schemas.messages import (
    CameraChanged,
    CameraStatus,
    Frame,
    StreamEnd,
    VideoJob,
    VideoProgress,
    VideoStatus,
)
from schemas.topics import CAMERA_STATUS, CAMERAS, FRAMES, VIDEO_JOBS, VIDEO_STATUS, TopicSpec

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source could not be opened or read."""


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # frame number in the source
    position_s: float  # position in the source (files) in seconds
    captured_at: float  # wall clock (UNIX s) when the frame was grabbed
    jpeg: bytes
    width: int
    height: int


class FrameSource:
    """Blocking reader of one OpenCV source, sampled to a target fps, downscaled and JPEG-encoded.

    Network sources (``rtsp://``, ``http(s)://``) open through FFmpeg with ``decoder.open_timeout_s`` and
    ``decoder.read_timeout_s``; a read that times out ends the source (the caller reconnects).

    ``read`` and ``close`` may run on different executor threads (a stream task cancelled mid-read closes its
    source while the read still runs): a lock makes ``close`` wait for the read, since FFmpeg aborts the whole
    process when a codec is freed under a decoding thread (``Assertion fctx->async_lock failed``)."""

    def __init__(self, url: str, cfg: DecoderSettings) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        if url.isdigit():
            self.cap = cv2.VideoCapture(int(url))
        elif "://" in url:
            self.cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_s * 1000)])
        else:
            self.cap = cv2.VideoCapture(url)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"cannot open source {mask_url(url)!r}")
        self.src_fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        if not 1 <= self.src_fps <= 240:
            self.src_fps = 25.0
        self.total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.index = -1
        self.step = max(1.0, self.src_fps / cfg.target_fps)
        self._next_keep = 0.0

    @property
    def is_file(self) -> bool:
        """A source with a known length (a file, played as a camera when a camera's URL): it is paced at the
        target rate and ends; live sources report no frame count (0, or a negative one from FFmpeg)."""
        return self.total > 0

    @property
    def interval_s(self) -> float:
        """Source time between two sampled frames: ``1 / target_fps``, or the source's own frame interval when
        its rate is lower (a file camera plays in real time, never faster than it was recorded)."""
        return self.step / self.src_fps

    @property
    def sampled_total(self) -> int:
        return int(self.total / self.step) + 1 if self.total else 0

    def read(self) -> DecodedFrame | None:
        """The next sampled frame, or None at the end of the source (or once closed)."""
        with self._lock:
            return self._read()

    def _read(self) -> DecodedFrame | None:
        while True:
            if not self.cap.grab():
                return None
            captured_at = time.time()
            self.index += 1
            if self.index + 1e-6 < self._next_keep:
                continue
            self._next_keep += self.step
            ok, image = self.cap.retrieve()
            if not ok or image is None:
                return None
            return self._encode(image, captured_at)

    def _encode(self, image: np.ndarray, captured_at: float) -> DecodedFrame:
        h, w = image.shape[:2]
        if w > self.cfg.max_width:
            scale = self.cfg.max_width / w
            image = cv2.resize(image, (self.cfg.max_width, round(h * scale)), interpolation=cv2.INTER_AREA)
            h, w = image.shape[:2]
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise SourceError("JPEG encoding failed")
        return DecodedFrame(self.index, self.index / self.src_fps, captured_at, buf.tobytes(), w, h)

    def close(self) -> None:
        """Release the source once no read runs (a read after it returns None)."""
        with self._lock:
            self.cap.release()


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def next_due(due: float, now: float, period: float) -> float:
    """When the frame after the one due at ``due`` is due (monotonic seconds; ``now`` is the time it went out):
    one ``period`` later, so the deadlines stay ``t0 + n * period`` and an oversleep or a slow read is made up
    by the next, shorter wait instead of adding up. When ``now`` is already more than a period past that
    deadline (a stall), the schedule re-anchors at ``now``: the next frame goes at once and the later ones a
    period apart, with no burst to catch up the frames the stall cost (at most one frame goes early)."""
    following = due + period
    return now if now - following > period else following


class Pacer:
    """Plays a file camera at one frame per ``period`` s on ``clock``, across its passes: ``wait`` until the
    next frame is due (at once for the first), ``sent`` once it went out. A pass that ends leaves the due time
    as it is, so the next pass's first frame keeps the schedule (no pause at the loop)."""

    def __init__(self, period: float, clock: Clock) -> None:
        self.period = period
        self.clock = clock
        self.due: float | None = None

    async def wait(self) -> None:
        if self.due is None:
            self.due = self.clock.monotonic()
            return
        delay = self.due - self.clock.monotonic()
        if delay > 0:
            await self.clock.sleep(delay)

    def sent(self) -> None:
        now = self.clock.monotonic()
        self.due = next_due(now if self.due is None else self.due, now, self.period)


class DecoderAgent:
    """Owns cameras (by partition of the cameras topic) and runs video jobs, several at once.

    Rails: every task it starts is supervised (an unexpected error in any stops the decoder with that error,
    so ``facestream run decoder`` exits non-zero); every send is awaited or tracked (live frames: at most
    ``decoder.live_max_in_flight`` unacknowledged per camera, frames beyond are dropped and counted); queued
    video jobs are bounded (the video-jobs partitions pause while ``parallel_jobs`` jobs wait); offsets are
    committed in one place (``_commit_jobs``; the cameras changelog is never committed)."""

    name = "decoder"

    def __init__(self, *, settings: Settings, producer: AsyncProducer, media: MediaReader,
                 membership: Membership, source_io: Executor, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()  # live streams' pacing and reconnect waits
        self.source_io = source_io
        self.producer = producer
        self.media = media
        self.membership = membership
        self.client_id = self.name  # the member client id once running
        self.cameras: dict[str, CameraChanged] = {}
        self.camera_tasks: dict[str, asyncio.Task[None]] = {}
        self.camera_partition: dict[str, int] = {}  # partition of the cameras topic that holds each camera
        self.health: dict[str, StreamHealth] = {}  # camera id -> health of its stream (reported)
        self.jobs: asyncio.Queue[tuple[TopicPartition, int, VideoJob]] = asyncio.Queue()
        self.consumer: AIOKafkaConsumer | None = None
        self.cameras_topic = topic_name(settings, CAMERAS)
        self._jobs_topic = topic_name(settings, VIDEO_JOBS)
        self._sessions: dict[str, int] = {}  # camera id -> its latest stream session id
        self._progress: AIOKafkaConsumer | None = None
        self._frames_topic = topic_name(settings, FRAMES)
        self._failure: asyncio.Future[BaseException] | None = None
        self._wake_reporter = asyncio.Event()
        self._final: list[CameraStatus] = []  # "stopped" reports still to send
        self._retired: dict[str, CameraStatus] = {}  # camera id -> its last report from this process once stopped
        self.history = CameraHealthTable()  # every camera's latest reports, replayed from camera-status

    async def run(self, stop: asyncio.Event) -> None:
        group = group_id(self.settings, self.name)
        reporter = self.membership.reporter(self.name, group)
        self.client_id = reporter.client_id
        consumer = self.consumer = make_consumer(self.settings, [], group, client_id=reporter.client_id)
        consumer.subscribe([self.cameras_topic, self._jobs_topic], listener=_Rebalance(self, consumer))
        self._progress = make_consumer(self.settings, [], group_id(self.settings, "detector"))
        self._failure = asyncio.get_running_loop().create_future()
        self.history.start(self.settings)
        await consumer.start()
        await self._progress.start()
        if not await self.history.wait_ready(10):  # cameras resume their counters from it (the group joins meanwhile)
            log.warning("decoder: camera-status replay not caught up in 10 s; camera counters may restart")
        metrics.HEALTHY.labels(self.name).set(1)
        helpers = [self._supervised(self._run_jobs(stop), "video jobs"),
                   self._supervised(self._report_health(stop), "camera health")]
        try:
            while not stop.is_set() and not self._failure.done():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.kafka.max_batch)
                reporter.update(consumer.assignment())
                for tp, records in batches.items():
                    for record in records:
                        self._on_record(tp, record.offset, record.value)
                self._bound_jobs(consumer)
            if self._failure.done():
                raise self._failure.result()
        finally:
            metrics.HEALTHY.labels(self.name).set(0)
            tasks = [*helpers, *self.camera_tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.stop()
            reporter.close()
            await self._progress.stop()
            await self.history.stop()

    def _supervised(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """A task whose unexpected failure stops the decoder (cancellation is not a failure)."""
        task = asyncio.create_task(coro, name=f"decoder {what}")

        def check(t: asyncio.Task[None]) -> None:
            if t.cancelled() or t.exception() is None:
                return
            log.error("decoder: %s failed: %r", what, t.exception())
            if self._failure is not None and not self._failure.done():
                self._failure.set_result(t.exception())  # type: ignore[arg-type]

        task.add_done_callback(check)
        return task

    def _bound_jobs(self, consumer: AIOKafkaConsumer) -> None:
        """Pause the video-jobs partitions while enough jobs wait; camera changes keep flowing."""
        jobs = [tp for tp in consumer.assignment() if tp.topic == self._jobs_topic]
        if self.jobs.qsize() >= self.settings.decoder.parallel_jobs:
            consumer.pause(*jobs)
        else:
            consumer.resume(*jobs)

    def _on_record(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        spec: TopicSpec = CAMERAS if tp.topic == self.cameras_topic else VIDEO_JOBS
        try:
            message = spec.decode(value)
        except SchemaError as exc:  # a bad config record must not stop the decoder
            log.warning("decoder: skipping undecodable %s record at %d: %s", tp.topic, offset, exc)
            return
        if isinstance(message, CameraChanged):
            self._apply_camera(message, tp.partition)
        else:
            self.jobs.put_nowait((tp, offset, message))

    def _apply_camera(self, camera: CameraChanged, partition: int) -> None:
        """Start, restart (any change of the config) or stop one camera; the others keep streaming."""
        running = self.camera_tasks.get(camera.camera_id)
        current = self.cameras.get(camera.camera_id)
        if running is not None and not running.done() and current is not None and not reopens(current, camera):
            # a replay after a rebalance, or a change only the detector applies (mode, filters, ROI, name):
            # the stream goes on in the same session
            self.cameras[camera.camera_id] = camera
            return
        self.camera_partition[camera.camera_id] = partition
        if (old_health := self.health.get(camera.camera_id)) is not None:
            self._retired[camera.camera_id] = old_health.report(self.client_id)  # a reopen counts on
        task = self.camera_tasks.pop(camera.camera_id, None)
        if task:
            task.cancel()
        self.cameras.pop(camera.camera_id, None)
        if camera.deleted or not camera.active:
            log.info("camera %s stopped", camera.camera_id)
            self._stopped(camera.camera_id)
            return
        self.cameras[camera.camera_id] = camera
        health = self.health[camera.camera_id] = StreamHealth(
            camera.camera_id, self.settings.decoder.failed_after).resume(self._previous(camera.camera_id))
        self.camera_tasks[camera.camera_id] = self._supervised(self._stream(camera, health),
                                                               f"camera {camera.camera_id}")
        self._wake_reporter.set()

    def _previous(self, camera_id: str) -> CameraStatus | None:
        """The camera's latest decoder report: this process's own (a reopen, a restart after stopping) or
        the topic's (a camera that moved here from another decoder)."""
        reports = [r for r in (self._retired.pop(camera_id, None), self.history.latest(camera_id, "decoder")) if r]
        return max(reports, key=lambda r: r.timestamp, default=None)

    def _stopped(self, camera_id: str) -> None:
        health = self.health.pop(camera_id, None) or StreamHealth(camera_id, 1).resume(self._previous(camera_id))
        health.status = "stopped"
        self._final.append(report := health.report(self.client_id))
        self._retired[camera_id] = report
        metrics.SOURCE_UP.labels(camera_id).set(0)
        self._wake_reporter.set()

    def revoke(self, partitions: set[int]) -> None:
        """Cameras on partitions this instance lost stop here; their new owner starts them."""
        for camera_id in list(self.camera_tasks):
            if self.camera_partition.get(camera_id) in partitions:
                self.camera_tasks.pop(camera_id).cancel()
                self.cameras.pop(camera_id, None)
                self.health.pop(camera_id, None)

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the source I/O pool."""
        return await asyncio.get_running_loop().run_in_executor(self.source_io, fn, *args)

    async def _stream(self, camera: CameraChanged, health: StreamHealth) -> None:
        """Open, stream, and reopen one live source forever (until cancelled by a config change): at once
        after a file camera's clean end (its next pass), after the back-off otherwise."""
        d = self.settings.decoder
        pacer = Pacer(1.0 / d.target_fps, self.clock)  # file cameras only; its schedule runs on across passes
        while True:
            try:
                source = await self._open(camera.url)
            except UrlPolicyError as exc:  # not retried soon: only a DNS change or a restart can lift it
                health.refused(f"refused by the URL policy: {exc}")
                self._health_changed(health)
                await self.clock.sleep(reconnect_delay(health.failures, d.reconnect_max_s, d.reconnect_max_s))
                continue
            except SourceError as exc:
                health.open_failed(str(exc))
                self._health_changed(health)
                await self.clock.sleep(reconnect_delay(health.failures, d.reconnect_min_s, d.reconnect_max_s))
                continue
            health.opened(self._new_session(camera.camera_id))
            self._health_changed(health)
            before = health.frames_decoded
            pacer.period = source.interval_s
            try:
                error = await self._publish_live(camera, source, health, pacer if source.is_file else None)
            finally:
                await self._io(source.close)
            health.ended(error)
            self._health_changed(health)
            if source.is_file and error is None and health.frames_decoded > before:
                continue  # a pass of a file camera played to its end: the next one at once, on schedule
            await self.clock.sleep(reconnect_delay(health.failures, d.reconnect_min_s, d.reconnect_max_s))

    async def _open(self, url: str) -> FrameSource:
        """Open a live source: the URL policy again (a name that does not resolve now is left to the open,
        where it fails like any unreachable source), then, for a network source, the asyncio probe (a
        server that never answers is given up here, holding no thread and not OpenCV's one-open-at-a-time
        lock), then the blocking open in the source I/O pool. Raises UrlPolicyError or SourceError."""
        with contextlib.suppress(UnresolvableError):
            await check_url(url, "camera", self.settings, self.source_io)
        if probed(url):
            try:
                await probe_stream(url, self.settings.decoder.open_timeout_s, self.source_io)
            except ProbeError as exc:
                raise SourceError(f"cannot open source {mask_url(url)!r}: {exc}") from exc
        source: FrameSource = await self._io(FrameSource, url, self.settings.decoder)
        return source

    def _health_changed(self, health: StreamHealth) -> None:
        log.info("camera %s: %s%s", health.camera_id, health.status,
                 f" ({health.last_error})" if health.status != "streaming" and health.last_error else "")
        metrics.SOURCE_UP.labels(health.camera_id).set(1 if health.status == "streaming" else 0)
        self._wake_reporter.set()

    def _new_session(self, camera_id: str) -> int:
        """A stream session id: the open time in ms, strictly increasing per camera in this process."""
        session = max(int(time.time() * 1000), self._sessions.get(camera_id, 0) + 1)
        self._sessions[camera_id] = session
        return session

    async def _publish_live(self, camera: CameraChanged, source: FrameSource, health: StreamHealth,
                            pacer: Pacer | None) -> str | None:
        """Publish a session's frames until the source ends, one per ``pacer`` period when given (a file
        camera: a frame dropped for the send backlog keeps its slot); returns the error that ended the
        session (a read failure, a live stream's end, a failed frame send), None for a file's clean end."""
        pending: deque[asyncio.Future[tuple[int, int]]] = deque()
        limit = self.settings.decoder.live_max_in_flight
        error: str | None = None
        ended: str | None = None
        try:
            while True:
                if pacer is not None:
                    await pacer.wait()
                try:
                    decoded = await self._io(source.read)
                except (SourceError, cv2.error) as exc:
                    ended = f"read failed: {exc}"
                    break
                if decoded is None:
                    ended = None if source.is_file else "stream ended"
                    break
                if pacer is not None:
                    pacer.sent()
                while pending and pending[0].done():
                    error = _settled(pending.popleft(), health) or error
                if len(pending) >= limit:
                    health.dropped("send_backlog")  # the broker is behind: a live source is never paused
                    metrics.FRAMES_DROPPED.labels(camera.camera_id, "send_backlog").inc()
                    continue
                frame = Frame(camera_id=camera.camera_id, camera_group=camera.camera_group,
                              session=health.session, frame_no=decoded.index, timestamp=decoded.captured_at,
                              width=decoded.width, height=decoded.height, jpeg=decoded.jpeg,
                              labels=camera.labels)
                pending.append(self.producer.send(FRAMES, camera.camera_id, frame))
                health.decoded(decoded.captured_at)
                metrics.FRAMES_DECODED.labels(camera.camera_id).inc()
        finally:
            for future in pending:  # every send is accounted for, even when cancelled by a config change
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(future)
                error = _settled(future, health) or error
        return ended or error

    async def _report_health(self, stop: asyncio.Event) -> None:
        """Publish every owned camera's health on each change and every ``decoder.status_interval_s``."""
        interval = self.settings.decoder.status_interval_s
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake_reporter.wait(), interval)
            self._wake_reporter.clear()
            reports = self._final + [h.report(self.client_id) for h in self.health.values()]
            self._final = []
            await self.producer.send_all((CAMERA_STATUS, r.camera_id, r) for r in reports)
            await asyncio.sleep(0.05)  # coalesce bursts of changes

    async def _run_jobs(self, stop: asyncio.Event) -> None:
        """Run up to ``decoder.parallel_jobs`` files at once; commit each partition's jobs in order."""
        slots = asyncio.Semaphore(self.settings.decoder.parallel_jobs)
        done: dict[TopicPartition, set[int]] = {}
        started: dict[TopicPartition, list[int]] = {}
        running: set[asyncio.Task[None]] = set()

        async def one(tp: TopicPartition, offset: int, job: VideoJob) -> None:
            try:
                await self.process_file(job)
            except Exception as exc:
                log.exception("video %s failed", job.video_id)
                await self._progress_update(job, "failed", 0, 0, f"{type(exc).__name__}: {exc}")
            finally:
                slots.release()
            done.setdefault(tp, set()).add(offset)
            await self._commit_jobs(tp, started[tp], done[tp])

        try:
            while not stop.is_set():
                tp, offset, job = await self.jobs.get()
                await slots.acquire()
                started.setdefault(tp, []).append(offset)
                task = asyncio.create_task(one(tp, offset, job))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    async def _commit_jobs(self, tp: TopicPartition, started: list[int], done: set[int]) -> None:
        """Commit past the jobs finished without a gap (a crash redoes the unfinished ones)."""
        upto = None
        while started and started[0] in done:
            upto = started.pop(0)
            done.discard(upto)
        if upto is not None and self.consumer is not None:
            try:
                await self.consumer.commit({tp: OffsetAndMetadata(upto + 1, "")})
            except (CommitFailedError, IllegalStateError) as exc:
                log.warning("decoder: job commit skipped (partition moved; its new owner redoes it): %s", exc)

    async def process_file(self, job: VideoJob) -> None:
        """Publish every sampled frame of a file, then a StreamEnd; progress goes to video-status."""
        with tempfile.TemporaryDirectory(prefix="facestream-video-") as tmp:
            try:
                path = await self._io(self._local_copy, job.path, Path(tmp))
                source = await self._io(FrameSource, path, self.settings.decoder)
            except (SourceError, KeyError, OSError) as exc:
                await self._progress_update(job, "failed", 0, 0, f"{type(exc).__name__}: {exc}")
                return
            await self._publish_file(job, source)

    def _local_copy(self, path: str, tmp: Path) -> str:
        """A readable path for the job: a local file as is, else a media-store key (S3) copied to ``tmp``."""
        if Path(path).is_file() or "://" in path:
            return path
        target = tmp / Path(path).name
        self.media.get_file(path, target)  # streamed to disk, not read whole
        return str(target)

    async def _publish_file(self, job: VideoJob, source: FrameSource) -> None:
        base = job.started_at if job.started_at is not None else time.time()
        done, last_report = 0, 0.0
        try:
            total = source.sampled_total
            await self._progress_update(job, "processing", 0, total)
            pending: list[asyncio.Future[tuple[int, int]]] = []
            while True:
                decoded = await self._io(source.read)
                if decoded is None:
                    break
                frame = Frame(camera_id=job.camera_id, camera_group=job.camera_group, frame_no=decoded.index,
                              timestamp=base + decoded.position_s, offset_s=round(decoded.position_s, 6),
                              width=decoded.width, height=decoded.height, jpeg=decoded.jpeg,
                              video_id=job.video_id, labels=job.labels)
                pending.append(self.producer.send(FRAMES, job.camera_id, frame))
                metrics.FRAMES_DECODED.labels(job.camera_id).inc()
                done += 1
                if len(pending) >= 16:
                    partition, offset = (await asyncio.gather(*pending))[-1]
                    pending.clear()
                    await self._wait_for_detector(partition, offset)
                if time.monotonic() - last_report > 1.0:
                    last_report = time.monotonic()
                    await self._progress_update(job, "processing", done, max(total, done))
            await asyncio.gather(*pending)
            if done == 0:
                await self._progress_update(job, "failed", 0, 0, "no decodable frame in the file")
                return
            await self.producer.send(FRAMES, job.camera_id, StreamEnd(
                camera_id=job.camera_id, video_id=job.video_id, frames_total=done))
            await self._progress_update(job, "processing", done, done)
            log.info("video %s: %d frames published", job.video_id, done)
        finally:
            source.close()

    async def _wait_for_detector(self, partition: int, offset: int) -> None:
        """Back-pressure: stay at most ``max_in_flight`` frames ahead of the detector group's commits."""
        assert self._progress is not None
        tp = TopicPartition(self._frames_topic, partition)
        limit = self.settings.decoder.max_in_flight
        while True:
            committed = await self._progress.committed(tp) or 0
            if offset - committed < limit:
                return
            await asyncio.sleep(0.05)

    async def _progress_update(self, job: VideoJob, status: VideoStatus, done: int, total: int,
                               error: str | None = None) -> None:
        await self.producer.send(VIDEO_STATUS, job.video_id, VideoProgress(
            video_id=job.video_id, camera_id=job.camera_id, status=status, frames_done=done,
            frames_total=total, error=error))


def reopens(old: CameraChanged, new: CameraChanged) -> bool:
    """Whether a config change needs the camera's stream reopened (a new session): what the decoder itself
    uses (URL, group and labels: they are in every frame) or its activation. The rest is applied by the
    detector live."""
    return ((old.url, old.camera_group, old.labels, old.active, old.deleted)
            != (new.url, new.camera_group, new.labels, new.active, new.deleted))


def _settled(future: asyncio.Future[tuple[int, int]], health: StreamHealth) -> str | None:
    """Account for one acknowledged (or failed) live frame send; returns the error, if any."""
    if not future.done() or future.cancelled():
        health.dropped("send_failed")
        return "frame send cancelled"
    exc = future.exception()
    if exc is None:
        return None
    health.dropped("send_failed")
    metrics.FRAMES_DROPPED.labels(health.camera_id, "send_failed").inc()
    return f"frame send failed: {exc}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, agent: DecoderAgent, consumer: AIOKafkaConsumer) -> None:
        self.agent = agent
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.agent.revoke({tp.partition for tp in revoked if tp.topic == self.agent.cameras_topic})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        cams = [tp for tp in assigned if tp.topic == self.agent.cameras_topic]
        if cams:
            await self.consumer.seek_to_beginning(*cams)
