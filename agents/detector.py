"""Detector agent: frames -> faces. Detects, tracks per camera, picks the best face per track.

Inference and JPEG work run in the default executor. Every frame's colour signature (shot cuts, and so the
schedule) comes from a reduced decode (``decode_preview``); a frame the schedule detects is decoded in full
once: detection, alignment (once per face, its chip also feeds the quality score) and the thumbnail crop all
read that one image; the chip then travels to the extractor raw (``detector.chip_encoding``), not re-encoded. A camera's
frames arrive in order on one partition, so this instance owns that camera's tracker. Offsets are committed
no further than the last *clean point* of a camera with open tracks: the offset of a frame before which its
tracker held no track at all (``hold_commits``). A detector that dies replays from there with a fresh tracker,
which is then exactly in the state the dead one was in, so it posts the same faces with the same ids and no
track is restarted mid-way under a new id. After any rebalance the trackers of the partitions that moved are
dropped before the next batch (``partitions_changed``): the consumer resumes from the committed offset, so a
tracker that lived on would see frames it has already tracked.

A shot cut (``agents.shots``) ends every open track of the camera, so a track never spans two scenes.
Detection scheduling (``detector.detect_interval_s``, ``agents.detect_schedule``): every k-th frame of a camera
is detected, k from the camera's frame rate (always its first frame and every cut); on the others the tracker
predicts its faces' boxes by its motion model and no face is posted from them. Clean points are taken on
detected frames only. Live cameras: when the detector falls behind them (their frames reach it older than
``detector.live_target_age_s``) it stretches their interval (``LiveLoad``) rather than queue; while it has live
cameras it takes at most ``detector.live_max_batch`` frames per batch, since a batch's faces are posted when the
whole batch is analysed; frames it still could not post in time are skipped as stale (the backstop).
Each posted face carries the aligned chips of its track's other best faces (``Face.support``) for the
track-level identity decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import simplejpeg

from agents.camera_table import CameraTable
from agents.detect_schedule import DetectionSchedule, LiveLoad
from agents.ports import MediaWriter
from agents.shots import SIGNATURE_SIZE, colour_signature, is_cut
from agents.tracking import Candidate, FaceTracker, Post, TrackerPolicy
from connectors.camera_health import CameraHealthTable
from models.faces import Detection, FaceModels
from pipeline import metrics
from pipeline.membership import member_client_id
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import (
    CameraChanged,
    CameraStatus,
    Face,
    Frame,
    StreamEnd,
    SupportFace,
    face_id_for,
    frame_key_for,
)
from schemas.topics import CAMERA_STATUS, FACES, FRAMES

log = logging.getLogger(__name__)

CHIP_JPEG_QUALITY = 95
THUMB_MARGIN = 0.4


@dataclass(frozen=True)
class Shot:
    """What a candidate needs to become a Face message once posted."""

    frame: Frame
    detection: Detection
    chip: np.ndarray  # 150x150x3 BGR uint8
    thumb: np.ndarray  # the face box grown by THUMB_MARGIN, BGR uint8 (a copy: the frame is not kept)


@dataclass(frozen=True)
class Analysed:
    """What the models found in one frame: (quality, shot) per face, and the frame's colour signature;
    ``detected`` False: the schedule skipped detection on this frame (``faces`` is then empty)."""

    faces: list[tuple[float, Shot]]
    signature: np.ndarray
    detected: bool = True


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """A JPEG as HxWx3 BGR uint8; raises ValueError when it is undecodable.

    simplejpeg's libjpeg-turbo (SIMD colour conversion and upsampling) first: the same pixels as OpenCV's
    bundled build, a third of its CPU at 1080p (3.0 against 8.8 ms, BENCHMARKS.md "Frame path"). Anything it
    refuses (CMYK, a recoverable libjpeg warning, not a JPEG at all) goes to ``cv2.imdecode`` as before, which
    also keeps OpenCV's leniency with damaged frames."""
    try:
        image: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="BGR")
        return image
    except ValueError:
        pass
    if not data:
        raise ValueError("undecodable JPEG: empty")
    fallback = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if fallback is None:
        raise ValueError("undecodable JPEG")
    return fallback


def decode_preview(data: bytes) -> np.ndarray:
    """A JPEG decoded at reduced scale in the DCT domain, the smallest of libjpeg's M/8 scales at least
    ``agents.shots.SIGNATURE_SIZE`` (a 1080p frame at 1/8: 240x135; a 640x360 one: 80x45), HxWx3 BGR uint8:
    the colour signature's input on every frame, so a frame the schedule does not detect is never decoded in
    full (1080p: 1.0 CPU-ms against 3.9, BENCHMARKS.md "Per-stage CPU profile"). A 1/8 scale is the 8x8 block
    means, an area average like the signature's own. Anything simplejpeg refuses goes through ``decode_jpeg``
    (whole, lenient, raises ValueError when undecodable)."""
    width, height = SIGNATURE_SIZE
    try:
        image: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="BGR", min_width=width, min_height=height)
        return image
    except ValueError:
        return decode_jpeg(data)


def thumbnail(image: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
    """The face box grown by ``THUMB_MARGIN`` on each side, clipped to the frame."""
    x1, y1, x2, y2 = bbox
    mw, mh = (x2 - x1) * THUMB_MARGIN, (y2 - y1) * THUMB_MARGIN
    h, w = image.shape[:2]
    xa, ya = max(0, int(x1 - mw)), max(0, int(y1 - mh))
    xb, yb = min(w, int(x2 + mw)), min(h, int(y2 + mh))
    return image[ya:yb, xa:xb]


def in_roi(roi: list[tuple[float, float]] | None, bbox: tuple[float, float, float, float]) -> bool:
    if not roi or len(roi) < 3:
        return True
    centre = ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
    return cv2.pointPolygonTest(np.asarray(roi, np.float32), centre, False) >= 0


class DetectorAgent(AgentBase):
    name = "detector"
    replay_safe = True  # deterministic output ids: commits may be coalesced (pipeline.stage)
    inputs = (FRAMES,)

    def __init__(self, *, settings: Settings, models: FaceModels, media: MediaWriter) -> None:
        self.settings = settings
        self.models = models
        self.media = media
        self.cameras = CameraTable()
        self.trackers: dict[str, FaceTracker[Shot]] = {}
        self.sessions: dict[str, int] = {}  # camera id -> stream session its tracker follows
        self.partition_of: dict[str, tuple[str, int]] = {}
        self.signatures: dict[str, np.ndarray] = {}  # camera id -> colour signature of its last frame
        self.clean: dict[str, int] = {}  # camera id -> offset of the last frame its tracker met empty
        d = settings.detector
        self.schedule = DetectionSchedule(d.detect_interval_s)
        self.load = LiveLoad(d.live_target_age_s, max(0.0, d.live_max_detect_interval_s - d.detect_interval_s))
        # when the last batch with a live frame came; "now" at the start, so a detector's first batches are small
        # too: a first batch of 16 fresh live frames took the soak's first detector to 610 MiB (ONNX Runtime's
        # arena keeps its largest batch) against 300 for the restarted one
        self._live_at = time.monotonic()
        self._moved: set[tuple[str, int]] = set()  # partitions revoked or assigned since the last batch
        self._topic = f"{settings.kafka.topic_prefix}{FRAMES.name}"
        self.client_id = member_client_id(self.name)
        # live camera id -> [frames detected, faces posted, frames skipped as stale], carried on from the camera's
        # last detector report (``history``) when this process first meets it
        self.counts: dict[str, list[int]] = {}
        self.history = CameraHealthTable()
        self._history_waited = False
        self._next_report = 0.0
        self.frame_cost = 0.0  # seconds to analyse one frame lately (moving average), for the stale rule

    async def start(self) -> None:
        await self.cameras.start(self.settings)
        self.history.start(self.settings)  # waited for at the first batch: the group joins meanwhile

    async def stop(self) -> None:
        await self.cameras.stop()
        await self.history.stop()

    def partitions_changed(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance revoked or assigned ``partitions``: their cameras' tracking restarts at the next batch
        (from the committed offset, a clean point)."""
        self._moved |= partitions

    def _forget(self, camera_id: str) -> None:
        for table in (self.trackers, self.signatures, self.sessions, self.clean):
            table.pop(camera_id, None)

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        if not self._history_waited:
            self._history_waited = True
            if self.history.started and not await self.history.wait_ready(10):
                log.warning("detector: camera-status replay not caught up in 10 s; camera counters may restart")
        if self._moved:
            for camera_id in [c for c, tp in self.partition_of.items() if tp in self._moved]:
                self._forget(camera_id)
                self.schedule.forget(camera_id)
                self.counts.pop(camera_id, None)  # its owner reports it now (resuming from the topic)
            self._moved.clear()
        self._adapt(batch)
        batch = self._drop_stale(batch)
        frames = [item for item in batch if isinstance(item.message, Frame)]
        loop = asyncio.get_running_loop()
        messages = [m for m in (f.message for f in batch) if isinstance(m, Frame | StreamEnd)]
        started = time.perf_counter()
        analysed = await loop.run_in_executor(None, self._analyse, messages)
        if frames:
            cost = (time.perf_counter() - started) / len(frames)
            self.frame_cost = cost if not self.frame_cost else 0.8 * self.frame_cost + 0.2 * cost
        by_offset = {(f.partition, f.offset): a for f, a in zip(frames, analysed, strict=True)}
        outputs: list[Output] = []
        for item in batch:
            frame = item.message
            if not isinstance(frame, Frame | StreamEnd):
                continue  # the frames topic carries nothing else
            camera_id = frame.camera_id
            self.partition_of[camera_id] = (self._topic, item.partition)
            tracker = self._tracker(camera_id)
            if isinstance(frame, StreamEnd):
                outputs += await self._publish_posts(tracker.flush())
                outputs.append(Output(FACES, camera_id, frame))
                self._forget(camera_id)
                continue
            if frame.session:
                self._count(camera_id)[0] += 1
            if self.sessions.get(camera_id, frame.session) != frame.session:
                # the source reopened: frame numbers restart, so the old session's tracks end here
                outputs += await self._publish_posts(tracker.flush())
                self.trackers.pop(camera_id, None)
                self.signatures.pop(camera_id, None)
                tracker = self._tracker(camera_id)
            self.sessions[camera_id] = frame.session
            found = by_offset[(item.partition, item.offset)]
            if is_cut(self.signatures.get(camera_id), found.signature, self.settings.detector.cut_threshold):
                outputs += await self._publish_posts(tracker.flush())
            self.signatures[camera_id] = found.signature
            if not found.detected:
                outputs += await self._publish_posts(tracker.predict(frame.timestamp))
                continue
            if not tracker.tracks:
                self.clean[camera_id] = item.offset  # a fresh tracker replaying from here is this one
            cands = self._candidates(frame, found.faces, item.offset)
            outputs += await self._publish_posts(tracker.update(frame.frame_no, frame.timestamp, cands))
        return outputs

    def batch_limit(self) -> int | None:
        """``detector.live_max_batch`` while live frames came within the last 10 s (and for the first 10 s),
        else ``kafka.max_batch``."""
        return self.settings.detector.live_max_batch if time.monotonic() - self._live_at < 10 else None

    def _adapt(self, batch: list[Incoming]) -> None:
        """Stretch or relax the live cameras' detection interval by the age of the batch's oldest live frame
        (``agents.detect_schedule.LiveLoad``)."""
        stamps = [item.message.timestamp for item in batch if isinstance(item.message, Frame) and item.message.session]
        if not stamps:
            return
        self._live_at = time.monotonic()
        now = time.time()
        self.schedule.live_extra_s = self.load.observe(now - min(stamps), now)
        metrics.LIVE_DETECT_STRETCH.labels(self.client_id).set(self.schedule.live_extra_s)

    def _drop_stale(self, batch: list[Incoming]) -> list[Incoming]:
        """Skip the live frames whose faces could not be posted within ``detector.live_max_age_s`` of their
        capture (counted per camera as ``detector_behind``): when detection falls behind its cameras it skips
        ahead to the present rather than alert later and later. A batch's faces are posted once all its frames
        are analysed, so a frame kept must be young enough to wait for that too (``frame_cost`` per frame):
        the newest frames are kept, the oldest skipped. The newest live frame is kept while it is itself
        younger than the limit, so detection never stalls. Offline files are never skipped."""
        limit = self.settings.detector.live_max_age_s
        now = time.time()
        live = sorted((item.message.timestamp, n, item.message.camera_id) for n, item in enumerate(batch)
                      if isinstance(item.message, Frame) and item.message.session)
        others = sum(1 for item in batch if isinstance(item.message, Frame)) - len(live)
        keep = 0
        for kept, (timestamp, _, _) in enumerate(reversed(live), start=1):  # newest first: each waits for all kept
            if now - timestamp + self.frame_cost * (kept + others) > limit:
                break
            keep = kept
        if not keep and live and now - live[-1][0] <= limit:
            keep = 1
        skipped = live[: len(live) - keep]
        for _, _, camera_id in skipped:
            self._count(camera_id)[2] += 1
            metrics.FRAMES_DROPPED.labels(camera_id, "detector_behind").inc()
        gone = {n for _, n, _ in skipped}
        return [item for n, item in enumerate(batch) if n not in gone]

    def _count(self, camera_id: str) -> list[int]:
        """The live camera's counters, resumed from its last detector report when this process first meets
        it (another detector's before a crash or a rebalance), so they count for the camera."""
        if camera_id not in self.counts:
            last = self.history.latest(camera_id, "detector")
            self.counts[camera_id] = [last.frames_detected, last.faces_posted,
                                      last.drops.get("detector_behind", 0)] if last else [0, 0, 0]
        return self.counts[camera_id]

    async def tick(self, now: float) -> list[Output]:
        """Live cameras: end tracks by wall clock, since a quiet camera sends no frame to end them."""
        posts: list[Post[Shot]] = []
        for camera_id, tracker in self.trackers.items():
            if self.sessions.get(camera_id, 0) > 0:  # files (session 0, also when attributed to a camera) end
                posts += tracker.expire(now)          # their tracks by their StreamEnd, not the wall clock
        outputs = await self._publish_posts(posts)
        if now >= self._next_report:
            self._next_report = now + self.settings.decoder.status_interval_s
            outputs += [Output(CAMERA_STATUS, camera_id, CameraStatus(
                camera_id=camera_id, reporter="detector", client_id=self.client_id, timestamp=now,
                frames_detected=frames, faces_posted=faces, frames_dropped=stale,
                drops={"detector_behind": stale} if stale else {}))
                for camera_id, (frames, faces, stale) in self.counts.items()]
        return outputs

    def hold_commits(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Commit no further than the clean point of any camera with open tracks (see the module docstring),
        but never more than half the decoder's in-flight window behind, so faces that never leave the picture
        cannot stall an offline file (a replay after a crash then starts mid-track: documented trade-off)."""
        window = self.settings.decoder.max_in_flight // 2
        held: dict[tuple[str, int], int] = defaultdict(lambda: 1 << 62)
        for camera_id, tracker in self.trackers.items():
            clean = self.clean.get(camera_id)
            if tracker.tracks and clean is not None and camera_id in self.partition_of:
                tp = self.partition_of[camera_id]
                held[tp] = min(held[tp], clean)
        return {tp: max(off - window, min(off, held[tp])) if tp in held else off for tp, off in offsets.items()}

    def _tracker(self, camera_id: str) -> FaceTracker[Shot]:
        """The camera's tracker, following its current config: a change of ``best_face_mode`` applies to
        the open tracks from the next frame on (the camera table follows the cameras changelog)."""
        d = self.settings.detector
        camera = self.cameras.get(camera_id)
        mode = (camera.best_face_mode if camera and camera.best_face_mode else d.best_face_mode)
        policy = TrackerPolicy(
            mode=mode, iou_threshold=d.track_iou, timeout_s=d.track_timeout_s,
            realtime_interval_s=d.realtime_interval_s, realtime_post_first=d.realtime_post_first,
            max_track_s=d.max_track_s, track_faces=d.track_faces)
        tracker = self.trackers.get(camera_id)
        if tracker is None:
            tracker = self.trackers[camera_id] = FaceTracker(policy)
        elif tracker.policy != policy:
            tracker.policy = policy
        return tracker

    def _analyse(self, messages: list[Frame | StreamEnd]) -> list[Analysed]:
        """Blocking: take each frame's colour signature from a reduced decode (``decode_preview``); decode in
        full (once) and detect, in one batch, only the frames the schedule says are due (``_due``), then per
        face one alignment (its chip also feeds the quality score) and the thumbnail crop. One ``Analysed``
        per ``Frame`` of ``messages``, in order."""
        frames = [m for m in messages if isinstance(m, Frame)]
        if not frames:
            return []
        signatures = [colour_signature(decode_preview(f.jpeg)) for f in frames]
        due = self._due(messages, signatures)
        images = [decode_jpeg(f.jpeg) for f, d in zip(frames, due, strict=True) if d]
        found = iter(zip(images, self.models.detect(images, stream=True), strict=True))
        out = []
        for frame, signature, detect in zip(frames, signatures, due, strict=True):
            if not detect:
                metrics.FRAMES_PREDICTED.labels(frame.camera_id).inc()
                out.append(Analysed([], signature, detected=False))
                continue
            image, dets = next(found)
            metrics.FACES_DETECTED.labels(self.name).inc(len(dets))
            faces = []
            for det in dets:
                chip = self.models.align(image, det)
                shot = Shot(frame, det, chip, thumbnail(image, det.bbox).copy())
                faces.append((self.models.quality(image, det, chip), shot))
            out.append(Analysed(faces, signature))
        return out

    def _due(self, messages: list[Frame | StreamEnd], signatures: list[np.ndarray]) -> list[bool]:
        """Per frame of ``messages`` (in order, ``signatures`` theirs): whether it is detected. Walks the
        batch as ``handle`` will: a stream end or a new session starts the camera afresh, a cut is a
        signature jump from the camera's previous frame."""
        previous = dict(self.signatures)
        sessions = dict(self.sessions)
        signature = iter(signatures)
        due = []
        for message in messages:
            camera_id = message.camera_id
            if isinstance(message, StreamEnd):
                self.schedule.forget(camera_id)
                previous.pop(camera_id, None)
                sessions.pop(camera_id, None)
                continue
            current = next(signature)
            if sessions.get(camera_id, message.session) != message.session:
                previous.pop(camera_id, None)
            cut = is_cut(previous.get(camera_id), current, self.settings.detector.cut_threshold)
            due.append(self.schedule.due(camera_id, message.session, message.timestamp, cut))
            previous[camera_id], sessions[camera_id] = current, message.session
        return due

    def _candidates(self, frame: Frame, faces: list[tuple[float, Shot]], offset: int) -> list[Candidate[Shot]]:
        camera = self.cameras.get(frame.camera_id)
        cands = []
        for quality, shot in faces:
            det = shot.detection
            cands.append(Candidate(
                frame_no=frame.frame_no, timestamp=frame.timestamp, bbox=det.bbox, quality=quality,
                eligible=self._eligible(camera, det, quality), payload=shot, source_offset=offset))
        return cands

    def _eligible(self, camera: CameraChanged | None, det: Detection, quality: float) -> bool:
        d = self.settings.detector
        min_size = camera.min_face_size if camera and camera.min_face_size is not None else d.min_face_size
        min_quality = camera.min_quality if camera and camera.min_quality is not None else d.min_quality
        width = det.bbox[2] - det.bbox[0]
        return width >= min_size and quality >= min_quality and in_roi(camera.roi if camera else None, det.bbox)

    async def _publish_posts(self, posts: list[Post[Shot]]) -> list[Output]:
        if not posts:
            return []
        faces = await asyncio.get_running_loop().run_in_executor(None, self._to_faces, posts)
        for face in faces:
            if face.session:
                self._count(face.camera_id)[1] += 1
            metrics.EVENT_LATENCY.labels(self.name).observe(max(0.0, time.time() - face.timestamp))
        return [Output(FACES, f.camera_id, f) for f in faces]

    def _liveness(self, frame: Frame, det: Detection) -> float | None:
        return _liveness_of(self.models if self.settings.models.event_liveness else None, frame, det)

    def _to_faces(self, posts: list[Post[Shot]]) -> list[Face]:
        """Blocking: store the full frame and the thumbnail, build the messages."""
        encoding = self.settings.detector.chip_encoding
        faces = []
        for post in posts:
            shot = post.candidate.payload
            frame, det = shot.frame, shot.detection
            live = self._liveness(frame, det)
            face_id = face_id_for(frame.camera_id, frame.session, post.track_id, post.seq)
            frame_key = frame_key_for(frame.camera_id, frame.session, frame.frame_no)
            thumb_key = f"thumbs/{_safe(face_id)}.jpg"
            self.media.put(frame_key, frame.jpeg, "image/jpeg")
            self.media.put(thumb_key, encode_jpeg(shot.thumb), "image/jpeg")
            chip = shot.chip.tobytes() if encoding == "bgr" else encode_jpeg(shot.chip, CHIP_JPEG_QUALITY)
            faces.append(Face(
                face_id=face_id, camera_id=frame.camera_id, camera_group=frame.camera_group,
                session=frame.session, track_id=post.track_id, seq=post.seq, frame_no=frame.frame_no,
                timestamp=frame.timestamp, offset_s=frame.offset_s,
                bbox=tuple(float(v) for v in det.bbox),  # type: ignore[arg-type]
                landmarks=tuple((float(x), float(y)) for x, y in det.landmarks),  # type: ignore[arg-type]
                det_score=float(det.score), quality=float(post.candidate.quality),
                chip=chip, chip_encoding=encoding, frame_key=frame_key,
                thumbnail_key=thumb_key, video_id=frame.video_id, liveness=live, labels=frame.labels,
                **_support(post, encoding),
            ))
        return faces


def _liveness_of(models: FaceModels | None, frame: Frame, det: Detection) -> float | None:
    """Per-event liveness (``models.event_liveness``): the face scored in its full frame (decoded again: the
    frame is not kept, and this runs only for posted faces)."""
    if models is None:
        return None
    return models.liveness([(decode_jpeg(frame.jpeg), det.bbox)])[0]


def _support(post: Post[Shot], encoding: str) -> dict[str, Any]:
    """``Face.support`` and ``Face.support_chips`` from the post's other best faces of its track."""
    shown = post.candidate
    others = [c for c in post.support if c is not shown]
    chips = [c.payload.chip.tobytes() if encoding == "bgr" else encode_jpeg(c.payload.chip, CHIP_JPEG_QUALITY)
             for c in others]
    return {"support": [SupportFace(frame_no=c.frame_no, quality=float(c.quality), size=len(b))
                        for c, b in zip(others, chips, strict=True)],
            "support_chips": b"".join(chips)}


def _safe(name: str) -> str:
    """Media keys from ids: keep them path-safe."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

