"""``POST /v1/video-liveness``: is the person in a short clip live? (FindFace Server's liveness-api.)

The body is the clip (``Content-Type: video/*``) or a multipart form with a file field ``video``; at most
``video_liveness.max_body_bytes`` (413 beyond). Rules and limits: ``models/video_liveness.py``; 400 for a bad or
out-of-limit video, 406 when no usable face is found (or several under the ``refuse`` policy). The liveness
model is a plug-in (``models.liveness_model``); the shipped one's training data is undisclosed.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path

import cv2
import numpy as np
from aiohttp import web

from connectors.api.core import ApiError, FormField, RouteTable
from connectors.api.references import jpeg
from connectors.api.state import ApiState, state
from connectors.api.uploads import read_form
from connectors.sql.base import new_id
from connectors.sql.references import Detection, DetectionRepository
from models.video_liveness import VideoLimits, VideoLivenessError, VideoLivenessResult, assess_video
from schemas.liveness import LivenessBox, LivenessFace, VideoLivenessQuery, VideoLivenessResponse

routes = RouteTable()


async def _read_clip(request: web.Request, limit: int) -> bytes:
    """The clip's bytes: a ``video/*`` body or the ``video`` file of a form (413 past ``limit``, 415 else)."""
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, f"video: larger than the limit of {limit} bytes")
    if request.content_type.startswith("multipart/"):
        form = await read_form(request, limit, max_files=1)
        return form.file("video").data
    if not request.content_type.startswith("video/") and request.content_type != "application/octet-stream":
        raise ApiError(415, f"expected a video/* body or multipart/form-data, not {request.content_type!r}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"video: larger than the limit of {limit} bytes")
        chunks.append(chunk)
    if not size:
        raise ApiError(400, "video: the body is empty")
    return b"".join(chunks)


def _limits(st: ApiState) -> VideoLimits:
    v = st.settings.video_liveness
    return VideoLimits(max_fps=v.max_fps, max_width=v.max_width, max_height=v.max_height,
                       max_length_s=v.max_length_s, min_frames=v.min_frames, multiple_faces=v.multiple_faces,
                       secondary_face_ratio=v.secondary_face_ratio, threshold=st.settings.models.liveness_threshold)


def _assess(models: object, clip: bytes, limits: VideoLimits, frames: int) -> VideoLivenessResult:
    with tempfile.TemporaryDirectory(prefix="facestream-liveness-") as tmp:
        path = Path(tmp) / "clip"
        path.write_bytes(clip)
        return assess_video(path, models, limits, frames)  # type: ignore[arg-type]


def _png(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ApiError(400, "the face chip could not be encoded")
    return base64.b64encode(data.tobytes()).decode()


async def _keep_detection(st: ApiState, models: object, result: VideoLivenessResult) -> str:
    """Store the best face as a detection (its frame in the media store); returns its id."""
    loop = asyncio.get_running_loop()
    descriptor = await loop.run_in_executor(None, models.describe, [result.best_chip])  # type: ignore[attr-defined]
    batch, ident = new_id(), new_id()
    key = f"detections/{batch}.jpg"
    await loop.run_in_executor(None, st.media.put, key, jpeg(result.best_frame, 90), "image/jpeg")
    bbox = tuple(float(v) for v in result.best.detection.bbox)
    await DetectionRepository(st.engine).save(
        batch, key, [Detection(ident, bbox, result.best.quality, np.asarray(descriptor[0]).tolist())],  # type: ignore[arg-type]
        st.settings.api.detection_ttl_s)
    return ident


@routes.add("POST", "/v1/video-liveness", "Liveness of the person in a short clip: average over sampled frames "
            "of the best face", "faces", form=(FormField("video", "The clip (or send it as a video/* body).",
                                                           file=True),),
            errors=(400, 406, 413, 415, 503))
async def video_liveness(request: web.Request, query: VideoLivenessQuery) -> VideoLivenessResponse:
    st = state(request)
    clip = await _read_clip(request, st.settings.video_liveness.max_body_bytes)
    models = await st.faces.models()
    frames = query.frames or st.settings.video_liveness.frames
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(None, _assess, models, clip, _limits(st), frames)
    except VideoLivenessError as exc:
        raise ApiError(exc.status, str(exc), code="no_usable_face" if exc.status == 406 else None) from exc
    best = result.best
    x1, y1, x2, y2 = (float(v) for v in best.detection.bbox)
    face = LivenessFace(
        liveness=best.liveness, quality=best.quality, bbox=LivenessBox(left=x1, top=y1, right=x2, bottom=y2),
        frame_no=best.frame_no, frame_ts=round(best.frame_ts, 3),
        detection_id=await _keep_detection(st, models, result) if query.return_detection else None,
        photo=base64.b64encode(jpeg(result.best_frame, 90)).decode() if query.return_photo else None,
        normalized=_png(result.best_chip) if query.return_normalized else None)
    return VideoLivenessResponse(alive=result.alive, average_liveness=result.average_liveness,
                                 frames_scored=result.frames_scored, best_face=face)
