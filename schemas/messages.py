"""Every Kafka payload, one schema per topic (see schemas/topics.py).

Conventions: times are UNIX seconds (float, UTC); boxes are ``(x1, y1, x2, y2)`` in pixels of the
published frame; landmarks are five ``(x, y)`` points in the same frame (left eye, right eye, nose,
left mouth corner, right mouth corner, as seen in the image); descriptors are 128 float32 values,
L2-normalised; confidences lie in [0, 1]. Frames and faces travel as a binary envelope (their JPEG or
chip bytes raw, see ``schemas.base``); other messages are JSON, where binary blobs travel base64-encoded.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from schemas.attributes import AttributeFields
from schemas.base import Message

BBox = tuple[float, float, float, float]
Point = tuple[float, float]
Attributes = dict[str, dict[str, float]]  # plug-in name -> label -> probability
Labels = dict[str, str]
"""A camera's labels: string key/value tags set through the API (``PATCH /v1/cameras/{id}``), copied into
every frame, face and event of that camera so face plug-ins (``agents.face_plugins``) and consumers can use
them. Empty for a camera without labels and for uploaded videos not attributed to a camera."""


class StreamEnd(Message):
    """End of an offline file. The decoder sends it after the last frame; every stage forwards it
    in order on the same key (camera id), so when the store sink sees it every event of the file
    before it has been stored."""

    kind: Literal["end"] = "end"
    camera_id: str
    video_id: str | None = None
    frames_total: int = 0


def face_id_for(camera_id: str, session: int, track_id: int, seq: int) -> str:
    """The deterministic id of a posted face (and of its event).

    Offline files (``session`` 0) keep ``camera:track:seq``; a live stream session adds its id, so a
    reopened source (reconnect, restart, camera moved to another decoder), whose frame numbers restart at
    0, never repeats an id: ``camera:session:track:seq``."""
    if session:
        return f"{camera_id}:{session}:{track_id}:{seq}"
    return f"{camera_id}:{track_id}:{seq}"


def frame_key_for(camera_id: str, session: int, frame_no: int) -> str:
    """Media-store key of a published frame (path-safe); unique per stream session like ``face_id_for``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in camera_id)
    return f"frames/{safe}/{session}-{frame_no}.jpg" if session else f"frames/{safe}/{frame_no}.jpg"


class Frame(Message):
    """decoder -> detector. Keyed by camera id.

    ``session`` identifies one opening of a live source: the decoder's open time of it in milliseconds
    (UNIX), strictly increasing per camera; 0 for offline files. ``frame_no`` counts from 0 within a
    session. ``timestamp`` is the capture time (live: wall clock when the frame was grabbed; files: the
    video's start time plus ``offset_s``). ``jpeg`` travels raw in the binary envelope."""

    blob_fields: ClassVar[tuple[str, ...]] = ("jpeg",)

    kind: Literal["frame"] = "frame"
    camera_id: str
    camera_group: str = "default"
    session: int = Field(0, ge=0)
    frame_no: int = Field(ge=0)
    timestamp: float
    offset_s: float | None = None  # files: seconds from the start of the video
    width: int = 0
    height: int = 0
    jpeg: bytes = b""
    video_id: str | None = None  # set for uploaded/offline files
    labels: Labels = Field(default_factory=dict)  # the camera's (see ``Labels``)


class SupportFace(Message):
    """One of the other faces of a track that its identity decision uses (see ``Face.support``)."""

    frame_no: int
    quality: float
    size: int = Field(ge=0)  # bytes of its chip in ``Face.support_chips``


class Face(Message):
    """detector -> extractor: the best face of a track (or of a realtime interval). Keyed by camera id.

    ``chip`` is the aligned 150x150 chip the descriptor reads, as ``chip_encoding`` says: ``"bgr"`` raw
    BGR uint8 pixels in C order (67,500 bytes: no JPEG encode in the detector, no decode in the extractor,
    no loss), or ``"jpeg"``. It travels raw in the binary envelope; the extractor drops it (``b""``) from
    the face it passes on, since nothing downstream of the descriptor reads it.

    ``support`` describes the track's other best faces so far (at most ``detector.track_faces`` - 1, best
    quality first, this face excluded); their chips, in ``chip_encoding`` too, lie end to end in
    ``support_chips`` (``SupportFace.size`` bytes each). The extractor describes this face and them, and the
    track's identity is decided on all of them; it drops both fields from the face it passes on."""

    blob_fields: ClassVar[tuple[str, ...]] = ("chip", "support_chips")

    kind: Literal["face"] = "face"
    face_id: str  # deterministic: face_id_for(camera_id, session, track_id, seq)
    camera_id: str
    camera_group: str = "default"
    session: int = Field(0, ge=0)  # the frame's stream session (0: offline file)
    track_id: int
    seq: int  # n-th face posted for this track
    frame_no: int
    timestamp: float
    offset_s: float | None = None
    bbox: BBox
    landmarks: tuple[Point, Point, Point, Point, Point]
    det_score: float
    quality: float
    chip: bytes = b""  # aligned 150x150 chip (see the class docstring)
    chip_encoding: Literal["bgr", "jpeg"] = "bgr"
    liveness: float | None = None  # live probability of the face in its frame (models.event_liveness only)
    frame_key: str | None = None  # media-store key of the full frame
    thumbnail_key: str | None = None  # media-store key of the face crop
    video_id: str | None = None
    support: list[SupportFace] = Field(default_factory=list)
    support_chips: bytes = b""  # the support faces' chips, end to end (see the class docstring)
    labels: Labels = Field(default_factory=dict)  # the camera's, from its frame (see ``Labels``)


class DescribedFace(Message):
    """extractor -> matcher: a face with its track's descriptor and the face's attributes.

    ``descriptor`` is the track's: the quality-weighted mean of the L2-normalised descriptors of the
    ``faces_used`` faces (this one and its support), normalised again (the face's own descriptor when it has
    no support)."""

    kind: Literal["described"] = "described"
    face: Face
    descriptor: list[float] = Field(min_length=128, max_length=128)
    attributes: Attributes = Field(default_factory=dict)
    faces_used: int = Field(1, ge=1)


class FaceEvent(Message):
    """matcher -> events: one per face, matched or not. ``event_id`` is deterministic (= face_id)."""

    kind: Literal["event"] = "event"
    event_id: str
    face_id: str
    camera_id: str
    camera_group: str = "default"
    track_id: int
    timestamp: float  # capture time of the face's frame (files: video start + offset_s)
    offset_s: float | None = None  # files: seconds from the start of the video
    matched: bool
    dossier_id: str | None = None
    dossier_name: str | None = None
    watch_list_ids: list[str] = Field(default_factory=list)
    confidence: float = 0.0  # the track's decision: to the best dossier face, matched or not
    quality: float  # of the face shown (the best one)
    bbox: BBox
    attributes: Attributes = Field(default_factory=dict)
    descriptor: list[float] = Field(min_length=128, max_length=128)  # the track's (see DescribedFace)
    faces_used: int = Field(1, ge=1)  # faces of the track the decision used
    frame_key: str | None = None
    thumbnail_key: str | None = None
    video_id: str | None = None
    labels: Labels = Field(default_factory=dict)  # the camera's, from its face (see ``Labels``)


class WatchListChanged(Message):
    """API -> matcher (gallery changes). Keyed by watch list id."""

    watch_list_id: str
    name: str = ""
    active: bool = True
    threshold: float | None = None  # overrides the global match threshold
    camera_groups: list[str] = Field(default_factory=list)  # empty: every camera group
    deleted: bool = False


class DossierFace(Message):
    face_id: str
    descriptor: list[float] = Field(min_length=128, max_length=128)


class DossierChanged(Message):
    """API -> matcher (gallery changes): the full current state of a dossier. Keyed by dossier id."""

    dossier_id: str
    name: str = ""
    active: bool = True
    watch_list_ids: list[str] = Field(default_factory=list)
    faces: list[DossierFace] = Field(default_factory=list)
    deleted: bool = False


class GalleryChange(Message):
    """The gallery-changes topic carries either kind."""

    watch_list: WatchListChanged | None = None
    dossier: DossierChanged | None = None


VideoStatus = Literal["queued", "processing", "done", "failed"]


class VideoProgress(Message):
    """decoder -> video-status: progress of an offline file."""

    video_id: str
    camera_id: str
    status: VideoStatus
    frames_done: int = 0
    frames_total: int = 0
    error: str | None = None


class DeadLetter(Message):
    """Any stage -> dead-letter: a message it could not process, and why."""

    stage: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    reason: str
    payload: bytes = b""


class CameraChanged(Message):
    """API -> decoders: the full current state of a camera. Keyed by camera id; the partition's owner
    decodes the camera (decoders replay this topic from the start on every assignment)."""

    camera_id: str
    name: str = ""
    url: str = ""  # file path, rtsp://, http(s)://, or a webcam index such as "0"
    camera_group: str = "default"
    active: bool = True
    deleted: bool = False
    roi: list[Point] | None = None  # polygon in frame pixels; faces whose centre lies outside are ignored
    best_face_mode: Literal["overall", "realtime"] | None = None  # None: detector.best_face_mode
    min_face_size: int | None = None  # None: detector.min_face_size
    min_quality: float | None = None  # None: detector.min_quality
    labels: Labels = Field(default_factory=dict)  # copied into every frame (see ``Labels``)


CameraState = Literal["connecting", "streaming", "reconnecting", "failed", "stopped"]


class CameraStatus(Message):
    """decoder / detector -> camera-status: the health of one live camera, as its owner sees it now.
    Keyed by camera id. The decoder owning the camera reports its source (``status``, ``session``, fps,
    frames, drops, last error) on every change and every ``decoder.status_interval_s``; the detector owning
    it reports ``faces_posted`` (and frames detected). Counters are those of the reporting process since it
    took the camera. Any API instance replays the topic and answers from the latest report of each."""

    kind: Literal["camera-status"] = "camera-status"
    camera_id: str
    reporter: Literal["decoder", "detector"]
    client_id: str = ""
    timestamp: float  # when reported (UNIX s)
    status: CameraState | None = None  # decoder reports only
    session: int = 0
    fps: float = 0.0
    frames_decoded: int = 0
    frames_dropped: int = 0
    drops: dict[str, int] = Field(default_factory=dict)  # reason -> frames dropped
    frames_detected: int = 0  # detector reports only (frames_dropped/drops: frames it skipped as stale)
    faces_posted: int = 0  # detector reports only
    last_frame_at: float | None = None
    last_error: str | None = None


class VideoJob(Message):
    """API -> decoders: process an uploaded file once, offline. Keyed by video id."""

    video_id: str
    path: str
    camera_id: str
    camera_group: str = "default"
    started_at: float | None = None  # UNIX time of the video's first frame; None: when decoding starts
    labels: Labels = Field(default_factory=dict)  # the attributed camera's (see ``Labels``)


# --- episodes, counters (helper-4) -------------------------------------------------------------


class EventRef(Message, AttributeFields):
    """A face event as an episode remembers it: no descriptor, no attribute distributions, but the flat
    attribute fields (gender, age, mask, emotion, liveness; ``schemas.attributes``)."""

    event_id: str
    face_id: str
    camera_id: str
    timestamp: float
    quality: float
    matched: bool
    confidence: float = 0.0
    dossier_id: str | None = None
    thumbnail_key: str | None = None


class Episode(Message):
    """Face events of one person close in time (FindFace semantics). ``episode_id`` is deterministic:
    ``"ep:" + first event id``. Times are event times (UNIX seconds)."""

    episode_id: str
    camera_group: str = "default"
    video_id: str | None = None
    opened_at: float  # timestamp of the first event
    last_at: float  # timestamp of the last event
    closed: bool = False
    close_reason: Literal["timeout", "max_duration", "stream_end", "idle", "interrupted"] | None = None
    event_count: int = Field(ge=1)
    first_event: EventRef
    last_event: EventRef
    best_event: EventRef  # highest quality
    matched_event: EventRef | None = None  # highest confidence among matched events
    matched: bool = False
    dossier_id: str | None = None
    dossier_name: str | None = None
    camera_ids: list[str] = Field(default_factory=list)  # sorted
    watch_list_ids: list[str] = Field(default_factory=list)  # sorted


class EpisodeChanged(Message):
    """episodes stage -> episodes topic: an episode opened, took an event, or closed. Keyed by episode id.
    ``event_ids`` are the events that this change added (empty on a close by time-out)."""

    kind: Literal["episode"] = "episode"
    change: Literal["open", "update", "close"]
    episode: Episode
    event_ids: list[str] = Field(default_factory=list)


class EpisodeStateRecord(Message):
    """Changelog of the episodes stage, keyed by episode id: an open episode with the reference descriptors
    it is compared against, or a closed marker (``episode.closed``, no descriptors). ``event_ids`` are the
    episode's events, so a restarted stage skips events its replayed state already holds."""

    episode: Episode
    descriptors: list[list[float]] = Field(default_factory=list)  # normalised 128-D: first, best, last event
    event_ids: list[str] = Field(default_factory=list)


class CounterRecord(Message):
    """counters stage -> counter-records: faces seen by a counter in ``[start, end)`` (event time).
    Keyed by counter id. A window is re-published (same ``start``) while it is open; ``final`` marks
    the last version."""

    kind: Literal["counter"] = "counter"
    counter_id: str
    start: float
    end: float
    faces: int = 0
    matched: int = 0
    unmatched: int = 0
    camera_ids: list[str] = Field(default_factory=list)
    final: bool = False


NoticeValue = str | int | float | bool | None


class PluginNotice(Message):
    """A face plug-in -> plugin-notices: something a plug-in noticed about a face (e.g. a frequent visitor).
    Keyed by the plug-in's name. ``notice_id`` is deterministic (the plug-in's name, the notice's kind and
    what it is about, see ``agents.face_plugins.PluginContext.notice``) so a redelivered face yields the same
    notice and consumers drop duplicates. ``data`` is the plug-in's own, flat, documented by the plug-in."""

    kind: Literal["plugin-notice"] = "plugin-notice"
    notice_id: str
    plugin: str
    notice: str = Field(min_length=1, max_length=64)  # the plug-in's kind of notice, e.g. "frequent_visitor"
    event_id: str  # the face event that raised it
    camera_id: str
    camera_group: str = "default"
    timestamp: float  # event time of that face
    dossier_id: str | None = None  # a dossier it concerns (matched, or enrolled by the plug-in)
    labels: Labels = Field(default_factory=dict)  # the camera's
    data: dict[str, NoticeValue] = Field(default_factory=dict)


class MemberReport(Message):
    """A stage worker -> stage-members: the partitions it owns now (ops status).

    Keyed by ``client_id``. Sent on every assignment change and periodically; the broker's live member list
    decides which reports count (a Kafka member id starts with its client id). Needed because the embedded
    broker (Tansu) returns neither client hosts nor assignments from DescribeGroups."""

    kind: Literal["member"] = "member"
    group: str  # consumer group, e.g. "facestream.detector"
    client_id: str
    host: str
    pid: int
    partitions: list[tuple[str, int]] = Field(default_factory=list)  # (topic, partition)
    timestamp: float
    restarts: int = Field(0, ge=0, description="Times this role crashed and was restarted in this process (`up`).")
