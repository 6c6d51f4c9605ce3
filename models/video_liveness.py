"""Video liveness (FindFace Server's liveness-api): sample a short clip, find the best face, average the
per-frame liveness of the chosen face.

``assess_video`` is blocking (OpenCV decoding and inference): run it in an executor. Frames are BGR uint8;
boxes (x1, y1, x2, y2) pixels of the frame; ``frame_ts`` seconds from the start of the clip.

Rules, in order:

1. The clip must open and decode, and stay within the limits (fps, width, height, length): else
   ``VideoLivenessError`` 400 naming the limit.
2. Up to ``frames`` frames are sampled evenly over the clip; fewer than ``min_frames`` decodable: 400.
3. In each sampled frame, faces narrower than ``secondary_face_ratio`` x the widest one are ignored. If more
   than one face is left the ``multiple_faces`` policy decides: ``best`` (highest quality), ``biggest``
   (widest box) or ``refuse`` (406 naming the frame).
4. A frame with no face is skipped; fewer than ``min_frames`` frames scored: 406 (no usable face).
5. ``average_liveness`` is the mean live probability of the chosen faces; ``alive`` when it reaches the
   threshold; the best face is the chosen face of highest quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from models.faces import Detection, FaceModels

Policy = Literal["best", "biggest", "refuse"]


class VideoLivenessError(ValueError):
    """The clip cannot be assessed: ``status`` 400 (bad or out-of-limit video) or 406 (no usable face)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class VideoLimits:
    """What a clip may be and how faces are chosen (``pipeline.settings.VideoLivenessSettings``)."""

    max_fps: float = 60.0
    max_width: int = 1920
    max_height: int = 1080
    max_length_s: float = 60.0
    min_frames: int = 10
    multiple_faces: Policy = "best"
    secondary_face_ratio: float = 0.5
    threshold: float = 0.4


@dataclass(frozen=True)
class ScoredFrame:
    frame_no: int
    frame_ts: float
    detection: Detection
    quality: float
    liveness: float


@dataclass(frozen=True)
class VideoLivenessResult:
    alive: bool
    average_liveness: float
    frames_scored: int
    best: ScoredFrame
    best_frame: np.ndarray  # the full frame of the best face (BGR)
    best_chip: np.ndarray  # its aligned 150x150 chip (BGR)


def sample_indices(total: int, frames: int) -> list[int]:
    """``frames`` frame numbers spread evenly over ``total`` frames (all of them when there are fewer)."""
    if total <= frames:
        return list(range(total))
    return sorted({round(i * (total - 1) / (frames - 1)) for i in range(frames)}) if frames > 1 else [0]


def choose_face(detections: list[Detection], qualities: list[float], policy: Policy, ratio: float,
                frame_no: int) -> int | None:
    """Index of the face to score in one frame (None: no face); raises 406 under ``refuse`` with several."""
    if not detections:
        return None
    widths = [d.bbox[2] - d.bbox[0] for d in detections]
    widest = max(widths)
    kept = [i for i, w in enumerate(widths) if w >= ratio * widest]
    if len(kept) > 1 and policy == "refuse":
        raise VideoLivenessError(406, f"frame {frame_no}: {len(kept)} faces; send a clip with one person")
    if policy == "biggest":
        return max(kept, key=lambda i: widths[i])
    return max(kept, key=lambda i: qualities[i])


def _check_limits(capture: cv2.VideoCapture, limits: VideoLimits) -> tuple[int, float]:
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if fps > limits.max_fps:
        raise VideoLivenessError(400, f"video: {fps:g} fps is more than the limit of {limits.max_fps:g}")
    if width > limits.max_width or height > limits.max_height:
        raise VideoLivenessError(400, f"video: {width}x{height} is larger than the limit of "
                                      f"{limits.max_width}x{limits.max_height}")
    if fps > 0 and total / fps > limits.max_length_s:
        raise VideoLivenessError(400, f"video: {total / fps:.1f} s is longer than the limit of "
                                      f"{limits.max_length_s:g} s")
    return total, fps if fps > 0 else 25.0


def _decode(capture: cv2.VideoCapture, total: int, frames: int) -> list[tuple[int, np.ndarray]]:
    """The sampled frames, read sequentially (seeking is unreliable in many containers)."""
    wanted = set(sample_indices(total, frames)) if total > 0 else None
    out: list[tuple[int, np.ndarray]] = []
    n = 0
    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            break
        if wanted is None or n in wanted:
            out.append((n, frame))
        n += 1
        if wanted is not None and n > max(wanted):
            break
    if wanted is None and len(out) > frames:  # the container did not say how many frames it holds
        keep = set(sample_indices(len(out), frames))
        out = [item for i, item in enumerate(out) if i in keep]
    return out


def assess_video(path: Path, models: FaceModels, limits: VideoLimits, frames: int = 30) -> VideoLivenessResult:
    """Liveness of the clip at ``path`` (rules in the module docstring); raises ``VideoLivenessError``."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoLivenessError(400, "video: not a readable video")
        total, fps = _check_limits(capture, limits)
        decoded = _decode(capture, total, frames)
    finally:
        capture.release()
    if not decoded:
        raise VideoLivenessError(400, "video: no frame could be decoded")
    if len(decoded) < limits.min_frames:
        raise VideoLivenessError(400, f"video: only {len(decoded)} frames decoded; at least "
                                      f"{limits.min_frames} are needed")
    scored: list[tuple[ScoredFrame, np.ndarray]] = []
    for frame_no, image in decoded:
        detections = models.detect([image])[0]
        qualities = [models.quality(image, d) for d in detections]
        index = choose_face(detections, qualities, limits.multiple_faces, limits.secondary_face_ratio, frame_no)
        if index is None:
            continue
        det = detections[index]
        live = models.liveness([(image, det.bbox)])[0]
        scored.append((ScoredFrame(frame_no, frame_no / fps, det, qualities[index], live), image))
    if len(scored) < limits.min_frames:
        raise VideoLivenessError(406, f"no usable face: a face was found in {len(scored)} of {len(decoded)} "
                                      f"sampled frames; at least {limits.min_frames} are needed")
    average = float(np.mean([s.liveness for s, _ in scored]))
    best, best_frame = max(scored, key=lambda item: item[0].quality)
    return VideoLivenessResult(alive=average >= limits.threshold, average_liveness=average,
                               frames_scored=len(scored), best=best, best_frame=best_frame,
                               best_chip=models.align(best_frame, best.detection))
