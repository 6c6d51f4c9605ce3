"""Bodies of ``POST /v1/video-liveness`` (FindFace's liveness-api shape). Boxes are pixels of the clip's frame;
``frame_ts`` is seconds from the start of the clip; images are base64 (``photo`` JPEG, ``normalized`` PNG)."""

from __future__ import annotations

from pydantic import Field

from schemas.api import ApiModel


class VideoLivenessQuery(ApiModel):
    frames: int | None = Field(None, ge=1, le=300, description="Frames to sample (default video_liveness.frames).")
    return_detection: bool = Field(False, description="Keep the best face as a detection; answer its detection_id.")
    return_normalized: bool = Field(False, description="Answer the best face's aligned chip (base64 PNG).")
    return_photo: bool = Field(False, description="Answer the best face's full frame (base64 JPEG).")


class LivenessBox(ApiModel):
    left: float
    top: float
    right: float
    bottom: float


class LivenessFace(ApiModel):
    liveness: float = Field(description="Live probability of this face in its frame, 0-1.")
    quality: float = Field(description="Face quality, 0-1 (the best face has the highest).")
    bbox: LivenessBox
    detection_id: str | None = Field(None, description="With return_detection: use as `detection:<id>`.")
    photo: str | None = Field(None, description="With return_photo: the full frame, base64 JPEG.")
    normalized: str | None = Field(None, description="With return_normalized: the aligned chip, base64 PNG.")
    frame_no: int = Field(description="Frame number in the clip (0-based).")
    frame_ts: float = Field(description="Seconds from the start of the clip.")


class VideoLivenessResponse(ApiModel):
    alive: bool = Field(description="average_liveness reached models.liveness_threshold.")
    average_liveness: float = Field(description="Mean live probability over the scored frames, 0-1.")
    frames_scored: int = Field(description="Sampled frames in which a face was scored.")
    best_face: LivenessFace
