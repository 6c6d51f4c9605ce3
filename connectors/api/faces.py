"""Face analysis for the API (detect, enrol, verify, search), over ``models.faces.FaceModels``.

Models load lazily on the first request that needs them (CRUD works without prepared models); every call
runs in the default executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from connectors.api.errors import ApiError
from models.faces import FaceModels, ModelsNotPreparedError
from schemas.messages import Attributes, BBox

log = logging.getLogger(__name__)

Choice = Literal["only", "largest"]


@dataclass(frozen=True)
class AnalysedFace:
    bbox: BBox
    landmarks: tuple[tuple[float, float], ...]  # 5 (x, y) points in image pixels
    det_score: float
    quality: float
    descriptor: np.ndarray | None  # (128,) float32, L2-normalised, when asked for
    attributes: Attributes
    chip: np.ndarray  # 150x150x3 BGR uint8 aligned chip

    @property
    def area(self) -> float:
        return max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1])


def similarity_confidence(cosine: float) -> float:
    """Confidence in [0, 1] for a cosine similarity of two normalised descriptors (``models.faces``)."""
    from models.faces import confidence

    return float(confidence(float(cosine)))


class FaceService:
    """Lazily loaded ``FaceModels`` plus the API's face operations."""

    def __init__(self, load: Callable[[], Awaitable[FaceModels]]) -> None:
        self._load = load  # the process's one FaceModels, opened by the composition root on first use
        self._models: object | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._models is not None

    async def models(self) -> object:
        async with self._lock:
            if self._models is None:
                try:
                    self._models = await self._load()
                except ModelsNotPreparedError as exc:
                    raise ApiError(503, f"face models are not prepared: {exc}") from exc
        return self._models

    async def analyse(self, image: np.ndarray, describe: bool = True, attributes: bool = False
                      ) -> list[AnalysedFace]:
        """Every face in a BGR image, best detection first."""
        models = await self.models()
        return await asyncio.get_running_loop().run_in_executor(None, _analyse, models, image, describe, attributes)

    async def one_face(self, image: np.ndarray, choose: Choice = "only", field_name: str = "photo",
                       min_quality: float = 0.0) -> AnalysedFace:
        """The face to use from a photo: 422 when there is none, several with ``choose="only"``, or when
        its quality is under ``min_quality``."""
        faces = await self.analyse(image)
        if not faces:
            raise ApiError(422, f"{field_name}: no face found in the image", [{"loc": [field_name], "msg": "no face"}])
        if len(faces) > 1 and choose == "only":
            raise ApiError(422, f"{field_name}: {len(faces)} faces found; send a photo with one face or set "
                                f"choose=largest", [{"loc": [field_name], "msg": "several faces"}])
        face = max(faces, key=lambda f: f.area)
        if face.quality < min_quality:
            raise ApiError(422, f"{field_name}: face quality {face.quality:.2f} is below the minimum {min_quality:.2f} "
                                f"(blurred, too small or turned away)", [{"loc": [field_name], "msg": "low quality"}])
        return face


def _analyse(models: object, image: np.ndarray, describe: bool, attributes: bool) -> list[AnalysedFace]:
    detections = models.detect([image])[0]  # type: ignore[attr-defined]
    if not detections:
        return []
    chips = [models.align(image, d) for d in detections]  # type: ignore[attr-defined]
    qualities = [models.quality(image, d, c) for d, c in zip(detections, chips, strict=True)]  # type: ignore[attr-defined]
    descriptors = models.describe(chips) if describe else [None] * len(chips)  # type: ignore[attr-defined]
    attrs = models.attributes(chips) if attributes else [{} for _ in chips]  # type: ignore[attr-defined]
    out = []
    for det, chip, quality, desc, attr in zip(detections, chips, qualities, descriptors, attrs, strict=True):
        points = tuple((float(x), float(y)) for x, y in np.asarray(det.landmarks).reshape(5, 2))
        out.append(AnalysedFace(bbox=tuple(float(v) for v in det.bbox), landmarks=points,  # type: ignore[arg-type]
                                det_score=float(det.score), quality=float(quality), descriptor=desc,
                                attributes=attr, chip=chip))
    return out
