"""Bodies of the query API (``connectors/api``): requests, responses and stored entities.

Conventions as in ``schemas/messages.py``: times are UNIX seconds (UTC), boxes ``(x1, y1, x2, y2)`` in pixels
of the image they were found in, confidences in [0, 1]. A camera's ROI is a polygon in pixels of the
published frame (faces whose box centre lies outside are ignored). Every created object answers with its ``id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.attributes import AttributeFields, AttributeFilters
from schemas.messages import Attributes, BBox, EventRef, Point

Role = Literal["admin", "operator", "viewer"]
VideoStatus = Literal["queued", "processing", "done", "failed"]
T = TypeVar("T")

# Bounds of every field a client sends (stated in the OpenAPI document as maxLength / maxItems /
# maxProperties): ids, names, lists of ids and free-form JSON.
MAX_ID = 128
MAX_IDS = 256
MAX_META_BYTES = 64 * 1024
MAX_META_KEYS = 256
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
IdList = Annotated[list[Id], Field(max_length=MAX_IDS)]


def _meta_bounded(meta: dict[str, Any]) -> dict[str, Any]:
    if len(orjson.dumps(meta)) > MAX_META_BYTES:
        raise ValueError(f"meta is larger than {MAX_META_BYTES} bytes as JSON")
    return meta


Meta = Annotated[dict[str, Any], Field(max_length=MAX_META_KEYS,
                                       description=f"Free-form JSON object, at most {MAX_META_KEYS} keys and "
                                                   f"{MAX_META_BYTES} bytes as JSON."),
                 AfterValidator(_meta_bounded)]


class ApiModel(BaseModel):
    """Base of API bodies: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Page(ApiModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next (null: no more)."""

    results: list[T]
    next_cursor: str | None = None


class ErrorDetail(BaseModel):
    """One offending input: where (``loc``: ``["body", "name"]``-like path) and what is wrong."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class ErrorInfo(ApiModel):
    code: str = Field(description="Stable machine-readable code: `invalid`, `not_found`, `conflict`, `no_face`, ...")
    message: str = Field(description="What went wrong, for a human.")
    details: list[ErrorDetail] | None = Field(None, description="The offending inputs, where there are any.")


class ErrorBody(ApiModel):
    """Every error answer, whatever its status."""

    error: ErrorInfo


# --- auth ---------------------------------------------------------------------------------------------------

class LoginRequest(ApiModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=256)


class UserIn(ApiModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=6, max_length=256)
    role: Role = "viewer"


class PasswordChange(ApiModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256, description="At least 8 characters, not a known default.")


class UserOut(ApiModel):
    id: str
    username: str
    role: Role
    created_at: float


class LoginResponse(ApiModel):
    token: str = Field(description="The access token: send as `Authorization: Token <token>`. It expires at "
                                   "`expires_at` (api.access_token_ttl_s after it was issued).")
    expires_at: float = Field(description="When `token` stops working (UNIX s).")
    refresh_token: str = Field(description="Exchange it, once, at POST /v1/auth/refresh for a new `token` and "
                                           "`refresh_token` before `refresh_expires_at`. Not an access token.")
    refresh_expires_at: float = Field(description="When `refresh_token` stops working (UNIX s).")
    user: UserOut


class RefreshRequest(ApiModel):
    refresh_token: str = Field(min_length=1, max_length=256, description="`refresh_token` of the last login or "
                                                                         "refresh (each works once).")


# --- camera groups and cameras ------------------------------------------------------------------------------

class CameraGroupIn(ApiModel):
    name: str = Field(min_length=1, max_length=256)
    comment: str = Field("", max_length=4096)


class CameraGroupPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=256)
    comment: str | None = Field(None, max_length=4096)


class CameraGroupOut(CameraGroupIn):
    id: str
    created_at: float
    updated_at: float


class CameraFilters(ApiModel):
    """Per-camera overrides of the detector's filters (null: the global setting)."""

    min_face_size: int | None = Field(None, ge=1, le=100_000,
                                      description="Faces narrower than this (pixels) are ignored.")
    min_quality: float | None = Field(None, ge=0, le=1, description="Faces below this quality are not posted.")


Polygon = Annotated[list[Point], Field(max_length=64)]
LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
CameraLabels = Annotated[
    dict[Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(max_length=256)]],
    Field(max_length=32, description="Key/value tags (at most 32; keys 1-64 letters, digits, `_.:-`; values at "
          "most 256 characters) copied into every frame, face and event of the camera, for face plug-ins and "
          "consumers. PATCH replaces the whole map; a change reopens the camera's stream."),
]


class CameraIn(ApiModel):
    name: str = Field(min_length=1, max_length=256)
    url: str = Field(min_length=1, max_length=4096, description="File path, rtsp://, http(s):// or a webcam index.")
    camera_group: Id = Field("default", description="Camera group id.")
    active: bool = True
    roi: Polygon | None = Field(
        None, description="Region of interest: a polygon of >= 3 (x, y) points in frame pixels.")
    best_face_mode: Literal["overall", "realtime"] | None = Field(None, description="null: the global setting.")
    filters: CameraFilters = Field(default_factory=CameraFilters)
    labels: CameraLabels = Field(default_factory=dict)

    @model_validator(mode="after")
    def _roi_ordered(self) -> CameraIn:
        _check_roi(self.roi)
        return self


class CameraPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=256)
    url: str | None = Field(None, min_length=1, max_length=4096)
    camera_group: Id | None = None
    active: bool | None = None
    roi: Polygon | None = None
    best_face_mode: Literal["overall", "realtime"] | None = None
    filters: CameraFilters | None = None
    labels: CameraLabels | None = None

    @model_validator(mode="after")
    def _roi_ordered(self) -> CameraPatch:
        _check_roi(self.roi)
        return self


def _check_roi(roi: Polygon | None) -> None:
    if roi is None:
        return
    if len(roi) < 3 or len(roi) > 64:
        raise ValueError("roi must be a polygon of 3 to 64 (x, y) points")
    if any(x < 0 or y < 0 for x, y in roi):
        raise ValueError("roi points must be non-negative pixel coordinates")


class CameraOut(CameraIn):
    """A camera and its health as its decoder and detector last reported it (topic ``camera-status``).
    ``url`` credentials are masked (``***:***@``) for roles below admin."""

    id: str
    created_at: float
    updated_at: float
    status: Literal["connecting", "streaming", "reconnecting", "failed", "stopped"] = Field(
        "connecting", description="connecting (not yet reported or first open), streaming, reconnecting "
        "(the source failed or ended; retrying), failed (decoder.failed_after opens failed; still retrying), "
        "stopped (inactive).")
    fps: float = Field(0.0, description="Frames per second decoded lately.")
    frames_decoded: int = Field(0, description="Frames published by the camera's decoders (counted on across "
                                "restarts and moves).")
    frames_dropped: int = Field(0, description="Frames dropped, the sum of `drops`.")
    drops: dict[str, int] = Field(default_factory=dict, description="Frames dropped by reason: send_backlog "
                                  "and send_failed (decoder: the broker was behind or refused), detector_behind "
                                  "(detector: too late to post within detector.live_max_age_s of capture, skipped).")
    faces_posted: int = Field(0, description="Faces the camera's detectors posted (counted on across restarts and "
                              "moves).")
    last_frame_at: float | None = Field(None, description="Capture time of the latest frame (UNIX s).")
    last_error: str | None = Field(None, description="The latest source error (open or read), if any.")
    session: int = Field(0, description="Current stream session (open time of the source, ms); in event ids.")
    reported_at: float | None = Field(None, description="When the decoder last reported (UNIX s).")


# --- watch lists and dossiers -------------------------------------------------------------------------------

Color = str


class WatchListIn(ApiModel):
    name: str = Field(min_length=1, max_length=256)
    color: Color = Field("#e53935", pattern=r"^#[0-9a-fA-F]{6}$", max_length=7, description="#RRGGBB")
    active: bool = True
    threshold: float | None = Field(None, ge=0, le=1, description="Overrides the global match threshold (confidence).")
    camera_groups: IdList = Field(default_factory=list, description="Camera group ids; empty: every group.")


class WatchListPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=256)
    color: Color | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$", max_length=7)
    active: bool | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    camera_groups: IdList | None = None


class WatchListOut(WatchListIn):
    id: str
    created_at: float
    updated_at: float


class DossierIn(ApiModel):
    name: str = Field(min_length=1, max_length=256)
    comment: str = Field("", max_length=4096)
    meta: Meta = Field(default_factory=dict)
    watch_lists: IdList = Field(default_factory=list, description="Watch list ids.")
    active: bool = True


class DossierPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=256)
    comment: str | None = Field(None, max_length=4096)
    meta: Meta | None = None
    watch_lists: IdList | None = None
    active: bool | None = None


class DossierFaceOut(ApiModel):
    id: str
    dossier_id: str
    image: str = Field(description="URL path of the enrolled photo.")
    quality: float
    bbox: BBox
    created_at: float


class DossierOut(DossierIn):
    id: str
    faces: list[DossierFaceOut] = Field(default_factory=list)
    created_at: float
    updated_at: float


# --- events and videos --------------------------------------------------------------------------------------

class EventFilters(ApiModel, AttributeFilters):
    """Query parameters shared by ``GET /v1/events`` and event search (attribute filters: ``gender``,
    ``age_min``/``age_max``, ``mask``, ``emotion``; ``schemas.attributes``)."""

    camera: Id | None = None
    camera_group: Id | None = None
    watch_list: Id | None = None
    dossier: Id | None = None
    matched: bool | None = None
    acknowledged: bool | None = None
    since: float | None = Field(None, description="UNIX seconds, inclusive.")
    until: float | None = Field(None, description="UNIX seconds, exclusive.")
    min_confidence: float | None = Field(None, ge=0, le=1)
    episode: Id | None = Field(None, description="Events of this episode.")
    video: Id | None = Field(None, description="Events of this uploaded video.")


class EventOut(ApiModel, AttributeFields):
    """A stored event; ``gender``, ``age``, ``mask``, ``emotion`` (and ``liveness`` where per-event liveness is
    on) summarise ``attributes`` (``schemas.attributes``)."""

    id: str
    camera: str
    camera_group: str
    timestamp: float = Field(description="Capture time (UNIX s); uploaded videos: the video's start + offset_s.")
    offset_s: float | None = Field(None, description="Uploaded videos: seconds from the start of the video.")
    matched: bool
    dossier: str | None
    dossier_name: str | None
    watch_lists: list[str]
    confidence: float = Field(description="The track's identity decision: similarity to the best dossier face.")
    faces_used: int | None = Field(None, ge=1, description=(
        "How many of the track's best faces (quality-ranked, up to `detector.track_faces`) went into the identity "
        "decision; null for events stored before this was recorded."))
    quality: float
    bbox: BBox
    attributes: Attributes
    episode: str | None
    acknowledged: bool
    acknowledged_at: float | None
    acknowledged_by: str | None
    video: str | None
    thumbnail: str | None = Field(description="URL path of the face thumbnail.")
    frame: str | None = Field(description="URL path of the full frame (null once purged).")


class VideoOut(ApiModel):
    id: str
    filename: str
    camera_id: str
    camera_group: str
    status: VideoStatus
    progress: float = Field(description="frames_done / frames_total, 0..1 (1 when done).")
    frames_done: int
    frames_total: int
    error: str | None
    created_at: float
    updated_at: float


class VideoDeleteQuery(ApiModel):
    keep_events: bool = Field(False, description="Keep the video's events and episodes (their `video` then names "
                                                 "a deleted video); default: delete them with it.")


class VideoUrlIn(ApiModel):
    """A video to fetch from a URL and process like an upload."""

    url: str = Field(max_length=4096, pattern=r"^https?://", description="http(s) URL of the video file.")
    camera_group: Id = Field("default", description="Camera group its events belong to (the camera's, if given).")
    camera: Id | None = Field(None, description="An existing, inactive camera to attribute the events to.")
    started_at: float | None = Field(None, description="UNIX time of the first frame (default: now).")


class BulkAcknowledgeIn(ApiModel):
    """Events to acknowledge: these ids, and/or every event matching these filters (one of them is needed)."""

    ids: IdList = Field(default_factory=list, description="Event ids.")
    filters: EventFilters | None = Field(None, description="Event filters, as GET /v1/events takes them.")


class BulkAcknowledgeResponse(ApiModel):
    acknowledged: int = Field(description="How many events were acknowledged now (already acknowledged: not counted).")


class EpisodeOut(ApiModel, AttributeFields):
    """Events of one person close in time (``schemas.messages.Episode``) as the API shows it; ``gender``,
    ``age``, ``mask``, ``emotion`` are those of its best event."""

    id: str
    camera_group: str
    video_id: str | None
    opened_at: float
    last_at: float
    closed: bool
    close_reason: str | None
    event_count: int
    first_event: EventRef
    last_event: EventRef
    best_event: EventRef
    matched_event: EventRef | None
    matched: bool
    dossier_id: str | None
    dossier_name: str | None
    camera_ids: list[str]
    watch_list_ids: list[str]
    acknowledged: bool
    acknowledged_at: float | None
    acknowledged_by: str | None
    event_ids: list[str] | None = Field(None, description="The episode's events (when one episode is asked for).")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> EpisodeOut:
        """From the episode repository's document (``episode_id`` -> ``id``)."""
        values = {k: v for k, v in doc.items() if k not in ("episode_id", "schema_version")}
        best = doc.get("best_event") or {}
        values.update({k: best.get(k) for k in AttributeFields.model_fields})
        return cls.model_validate({"id": doc["episode_id"], **values})


# --- detect, verify, search ---------------------------------------------------------------------------------

REF_PATTERN = r"^(detection|event|dossierface):[A-Za-z0-9:._-]{1,256}$"
FaceRef = Annotated[str, Field(max_length=300, pattern=REF_PATTERN, description=(
    "A face already known, in place of a photo: `detection:<detection_id>` (from POST /v1/detect, while it is "
    "kept), `event:<event id>` or `dossierface:<dossier face id>`."))]


def _listed(value: Any) -> Any:
    """A form field gives a list as one comma-separated value (or repeats the field)."""
    return [v for v in value.split(",") if v] if isinstance(value, str) else value


def _box(value: Any) -> Any:
    return [float(v) for v in value.split(",")] if isinstance(value, str) else value


FormIdList = Annotated[IdList, BeforeValidator(_listed)]
Box = Annotated[tuple[float, float, float, float], BeforeValidator(_box)]


class DetectedFace(ApiModel, AttributeFields):
    detection_id: str = Field(description="Name this face later as `detection:<detection_id>` (until `expires_at`).")
    bbox: BBox
    landmarks: tuple[Point, Point, Point, Point, Point]
    det_score: float
    quality: float
    attributes: Attributes = Field(default_factory=dict)


class DetectResponse(ApiModel):
    width: int
    height: int
    faces: list[DetectedFace]
    expires_at: float = Field(description="When the detections stop being usable as references (UNIX s).")


class VerifyIn(ApiModel):
    """Two faces: each a photo (`photo1`, `photo2`, its largest face) or a reference (`face1`, `face2`)."""

    face1: FaceRef | None = None
    face2: FaceRef | None = None


class VerifyResponse(ApiModel):
    confidence: float
    distance: float = Field(description="L2 distance of the two unit descriptors (dlib: < 0.6 same person).")
    match: bool


class EnrolIn(ApiModel):
    """The face to enrol: a reference (`face`), or a `photo` whose face is chosen by `box` or `choose`."""

    face: FaceRef | None = None
    box: Box | None = Field(None, description="The face of a group photo to enrol: the detected face that "
                                              "overlaps this box (x1,y1,x2,y2 pixels) most.")
    choose: Literal["only", "largest"] = Field("only", description="Without box: `only` refuses a photo with "
                                                                   "several faces, `largest` takes the largest.")


class SearchIn(EventFilters):
    """What to search for (a reference in `face`, or a `photo`) and how (1:N identification)."""

    face: FaceRef | None = None
    target: Literal["dossiers", "events"] = Field("dossiers", description="Search dossiers or past events.")
    limit: int = Field(10, ge=1, le=100, description="Result count: at most this many hits, best first.")
    threshold: float | None = Field(None, ge=0, le=1, description="Similarity threshold (confidence in [0, 1]); "
                                                                  "default the match threshold.")
    max_distance: float | None = Field(None, ge=0, le=2, description="Distance threshold: L2 distance of the unit "
                                                                    "descriptors at most this (dlib: 0.6).")
    watch_lists: FormIdList = Field(default_factory=list, description="Watch lists (groups) to search in: "
                                    "dossiers, or events matched, in any of them; empty: all.")
    watch_list: Id | None = Field(None, description="One watch list, the filter `GET /v1/dossiers` and "
                                  "`GET /v1/events` take: dossiers in it, or events matched in it (with "
                                  "`watch_lists`: both hold).")


class SearchHit(ApiModel):
    confidence: float
    distance: float = Field(description="L2 distance of the unit descriptors.")
    dossier: DossierOut | None = None
    event: EventOut | None = None


class SearchResponse(ApiModel):
    results: list[SearchHit]


class HealthOut(ApiModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]
