"""Per-camera face tracking and best-face selection (FindFace's ``overall`` and ``realtime`` modes).

Pure logic: no broker, no models. Boxes are (x1, y1, x2, y2) in frame pixels; times are the frames'
timestamps in seconds. Track ids are deterministic (first frame number and detection index), so a
detector that replays the same frames after a crash posts the same faces with the same ids.

Decisions on whole tracks: besides the best face to show, a track keeps its ``policy.track_faces`` best
eligible faces (by quality, over the whole track, not only the current realtime interval). Every post
carries them as ``support`` (best first, the posted face included), so the extractor can describe them
all and the matcher decide the track's identity on all of them; a realtime post carries the track so far.

Frames without detection (``detector.detect_interval_s``): ``predict`` moves every track's box by a constant-velocity
motion model (the box's velocity, in pixels per second, between its last two detections), so the next
detection is associated with where the face is now, not where it was; a prediction never extends a track
(``last_seen`` stays at its last detection, so ``timeout_s`` still ends a face that left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

Payload = TypeVar("Payload")
BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Candidate(Generic[Payload]):
    """One detected face in one frame. ``eligible`` is False when filters (size, quality, ROI) refuse
    it as a snapshot: it still extends its track."""

    frame_no: int
    timestamp: float
    bbox: BBox
    quality: float
    eligible: bool
    payload: Payload
    source_offset: int = -1  # offset of the frame in its partition (commit hold-back)


@dataclass(frozen=True)
class Post(Generic[Payload]):
    """A best face to publish: the ``seq``-th post of track ``track_id``. ``support``: the track's best
    eligible faces so far (at most ``policy.track_faces``, best quality first; ``candidate`` among them)."""

    track_id: int
    seq: int
    candidate: Candidate[Payload]
    support: tuple[Candidate[Payload], ...] = ()


@dataclass
class Track(Generic[Payload]):
    track_id: int
    bbox: BBox
    started: float
    last_seen: float
    first_offset: int
    best: Candidate[Payload] | None = None  # best not yet posted (overall: of the track; realtime: of the interval)
    interval_start: float = 0.0
    posted: int = 0
    best_posted_quality: float = -1.0
    top: list[Candidate[Payload]] = field(default_factory=list)  # best eligible faces of the whole track
    anchor: BBox | None = None  # box of the last detection (``bbox`` may be a prediction from it)
    velocity: BBox = (0.0, 0.0, 0.0, 0.0)  # d(box)/dt between the last two detections, pixels per second
    coasting: bool = False  # frames without detection since the last detection: ``bbox`` is predicted


@dataclass(frozen=True)
class TrackerPolicy:
    mode: Literal["overall", "realtime"] = "overall"
    iou_threshold: float = 0.3
    timeout_s: float = 1.0
    realtime_interval_s: float = 2.0
    realtime_post_first: bool = True
    max_track_s: float = 30.0
    track_faces: int = 10  # faces per track that the identity decision uses (>= 1)


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class FaceTracker(Generic[Payload]):
    """Tracks of one camera. Feed it every frame's candidates in order; it returns the posts due."""

    policy: TrackerPolicy
    tracks: dict[int, Track[Payload]] = field(default_factory=dict)

    def update(self, frame_no: int, timestamp: float, candidates: list[Candidate[Payload]]) -> list[Post[Payload]]:
        """Associate candidates with tracks (greedy by IoU), start new tracks, end stale ones."""
        posts = self.expire(timestamp)
        for track in self.tracks.values():
            if track.coasting:  # after frames without detection: where the motion model puts it now
                self._move(track, timestamp)
        pairs = sorted(
            ((iou(t.bbox, c.bbox), tid, ci) for tid, t in self.tracks.items() for ci, c in enumerate(candidates)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_cands: set[int] = set()
        for score, tid, ci in pairs:
            if score < self.policy.iou_threshold or tid in used_tracks or ci in used_cands:
                continue
            used_tracks.add(tid)
            used_cands.add(ci)
            posts.extend(self._extend(self.tracks[tid], candidates[ci]))
        for ci, cand in enumerate(candidates):
            if ci not in used_cands:
                track = Track[Payload](track_id=frame_no * 1000 + ci, bbox=cand.bbox, started=timestamp,
                                       last_seen=timestamp, first_offset=cand.source_offset,
                                       interval_start=timestamp)
                self.tracks[track.track_id] = track
                posts.extend(self._extend(track, cand))
        return posts

    def predict(self, timestamp: float) -> list[Post[Payload]]:
        """A frame at ``timestamp`` without detection: end stale tracks (as ``update`` would), then move each
        remaining track's box to where its motion model puts it at ``timestamp``."""
        posts = self.expire(timestamp)
        for track in self.tracks.values():
            track.coasting = True
            self._move(track, timestamp)
        return posts

    @staticmethod
    def _move(track: Track[Payload], timestamp: float) -> None:
        anchor = track.anchor or track.bbox
        dt = timestamp - track.last_seen
        x1, y1, x2, y2 = (a + v * dt for a, v in zip(anchor, track.velocity, strict=True))
        track.bbox = (x1, y1, x2, y2)

    def expire(self, now: float) -> list[Post[Payload]]:
        """End the tracks not seen for ``timeout_s`` before ``now``; post what they still hold."""
        stale = [tid for tid, t in self.tracks.items() if now - t.last_seen > self.policy.timeout_s]
        return [p for tid in stale for p in self._end(tid)]

    def flush(self) -> list[Post[Payload]]:
        """End every track (end of stream)."""
        return [p for tid in list(self.tracks) for p in self._end(tid)]

    def oldest_open_offset(self) -> int | None:
        offsets = [t.first_offset for t in self.tracks.values() if t.first_offset >= 0]
        return min(offsets) if offsets else None

    def _extend(self, track: Track[Payload], cand: Candidate[Payload]) -> list[Post[Payload]]:
        if track.anchor is not None and cand.timestamp > track.last_seen:
            dt = cand.timestamp - track.last_seen
            x1, y1, x2, y2 = ((b - a) / dt for a, b in zip(track.anchor, cand.bbox, strict=True))
            track.velocity = (x1, y1, x2, y2)
        track.anchor = track.bbox = cand.bbox
        track.coasting = False
        track.last_seen = cand.timestamp
        if cand.eligible and (track.best is None or cand.quality > track.best.quality):
            track.best = cand
        if cand.eligible:
            self._keep_top(track, cand)
        if self.policy.mode == "realtime":
            return self._realtime_due(track, cand.timestamp)
        if cand.timestamp - track.started >= self.policy.max_track_s and track.best is not None:
            track.started = cand.timestamp  # a very long track still reports now and then
            track.first_offset = cand.source_offset
            return [self._post(track)]
        return []

    def _realtime_due(self, track: Track[Payload], now: float) -> list[Post[Payload]]:
        if track.best is None:
            return []
        if track.posted == 0 and self.policy.realtime_post_first:
            return [self._post(track)]
        if now - track.interval_start >= self.policy.realtime_interval_s:
            return [self._post(track)]
        return []

    def _keep_top(self, track: Track[Payload], cand: Candidate[Payload]) -> None:
        """Insert ``cand`` into the track's best faces (quality descending, earlier first on ties)."""
        keep = max(1, self.policy.track_faces)
        if len(track.top) >= keep and cand.quality <= track.top[-1].quality:
            return
        at = next((i for i, c in enumerate(track.top) if cand.quality > c.quality), len(track.top))
        track.top.insert(at, cand)
        del track.top[keep:]

    def _post(self, track: Track[Payload]) -> Post[Payload]:
        assert track.best is not None
        best = track.best
        support = tuple(track.top) if any(c is best for c in track.top) else (best, *track.top[: len(track.top) - 1])
        post = Post(track.track_id, track.posted, best, support)
        track.posted += 1
        track.best_posted_quality = max(track.best_posted_quality, track.best.quality)
        track.best = None
        track.interval_start = post.candidate.timestamp
        if track.first_offset >= 0:
            track.first_offset = post.candidate.source_offset  # earlier frames are no longer needed
        return post

    def _end(self, tid: int) -> list[Post[Payload]]:
        track = self.tracks.pop(tid)
        return [self._post(track)] if track.best is not None else []
