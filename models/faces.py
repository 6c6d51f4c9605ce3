"""The face models facade: detect, align, score quality, describe and classify attributes.

``FaceModels.load(settings)`` opens the prepared ONNX files (``facestream models prepare``) once with the
engine the settings select; after that every method is safe to call from several threads (run them in an
executor, never on the event loop). Images are BGR uint8 HxWx3 (OpenCV's convention), coordinates are
(x, y) pixels of the image passed in.

Confidence and the default threshold
------------------------------------
Descriptors are L2-normalised, so two faces compare by cosine similarity ``s`` (L2 distance
``d = sqrt(2 - 2 s)``). ``confidence(s)`` maps that to [0, 1] with a logistic curve in ``d``:
``confidence = 1 / (1 + exp((d - 0.425) / 0.03))``.

dlib's rule "same person below L2 0.6" is stated on its raw descriptors, whose norms on real faces are
1.36-1.53 (mean 1.41; the ratio raw/normalised distance over all pairs has median 1.41). So raw 0.6 is
normalised ``d = 0.425``, cosine 0.91: **dlib's 0.6 rule is confidence 0.5**, the curve's centre.
The default ``DEFAULT_MATCH_THRESHOLD = 0.4`` is ``d = 0.437``, cosine 0.904 (raw L2 ~0.62). The matcher
applies it to a track's decision (the quality-weighted mean descriptor of the track's best faces, see
``agents.extractor.track_descriptor``), ``/v1/verify`` and ``/v1/search`` to single faces. It is derived by
``facestream bench calibration`` (``ops/bench_calibration.py``, figures in BENCHMARKS.md): the highest
different-person score over the portrait pairs and the posted tracks of ``short_hamilton_clip.mp4`` (its
non-enrolled audience included) is 0.28, the lowest same-person score 0.52 (Alex Lacamoire's profile
close-up, Obama turned away with his hand at his chin; the former 0.75 missed both), and 0.4 is the middle
of that gap in distance. Photo pairs keep 78 of 78 right, as at 0.75.

Calibration, on ``shared/data/faces`` plus skimage's astronaut, faces found by CenterFace and aligned
by ``models.align`` (14 whole faces, 4 people + 3 singletons: Obama in 9 photos/resolutions including
the left face of ``two_people.jpg``, Biden in 2, Miranda, Lacamoire, Eileen Collins): the 37
same-person pairs have ``d <= 0.326`` (cosine >= 0.947, raw L2 <= 0.45, confidence >= 0.96); the 54
different-person pairs have ``d >= 0.453`` (cosine <= 0.898, raw L2 >= 0.68, confidence <= 0.28).
``obama.jpg`` vs ``obama2.jpg``: cosine 0.960, confidence 0.99; ``obama.jpg`` vs ``biden.jpg``: cosine
0.821, confidence 0.003. The threshold sits in the gap; the width 0.03 makes the gap's edges read as
clearly "same" and clearly "different". Note the cosine of two different people is still high
(~0.8): dlib's descriptors are not centred, so use ``confidence``, never the raw cosine, as a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from models import attributes as attribute_plugins
from models.align import align_chip
from models.attributes import AttributeModel
from models.config import ModelSettings
from models.engines import Engine, ShapeProfile, open_engine
from models.liveness import LivenessModel, load_liveness
from models.plugins import Detection, FaceDescriptor, FaceDetector
from models.prepare import ModelsNotPreparedError, prepared_paths
from models.quality import quality_score
from models.registry import open_descriptor, open_detector

__all__ = [
    "DEFAULT_MATCH_THRESHOLD", "Detection", "FaceModels", "ModelsNotPreparedError", "confidence",
]

DEFAULT_MATCH_THRESHOLD: float = 0.4
_CONF_CENTRE = 0.425  # normalised L2 distance at confidence 0.5: dlib's raw 0.6 rule
_CONF_WIDTH = 0.03


def confidence(similarity: float | np.ndarray) -> float | np.ndarray:
    """Confidence in [0, 1] that two faces are the same person, from the cosine ``similarity`` of their
    normalised descriptors (a float or an array of them; see the module docstring)."""
    s = np.clip(np.asarray(similarity, dtype=np.float64), -1.0, 1.0)
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * s))
    conf = 1.0 / (1.0 + np.exp((distance - _CONF_CENTRE) / _CONF_WIDTH))
    return float(conf) if np.ndim(conf) == 0 else conf


def confidences(similarities: np.ndarray) -> np.ndarray:
    """``confidence`` of an array of cosines, as an array of the same shape (the agents' ``Similarity``)."""
    return np.asarray(confidence(similarities), dtype=np.float64)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class FaceModels:
    """Detector, descriptor and attribute models, loaded once (see the module docstring)."""

    def __init__(self, settings: ModelSettings, detector: FaceDetector, descriptor: FaceDescriptor,
                 plugins: list[tuple[AttributeModel, Engine]], liveness: LivenessModel | None = None) -> None:
        self.settings = settings
        self._detector = detector
        self._descriptor = descriptor
        self._plugins = plugins
        self._liveness = liveness

    @classmethod
    def load(cls, settings: ModelSettings) -> FaceModels:
        """Open the prepared models in ``settings.cache_dir``.

        Raises ``ModelsNotPreparedError`` (run ``facestream models prepare``) when the cache is incomplete."""
        paths = prepared_paths(settings.cache_dir)
        detector = open_detector(settings, paths)
        descriptor = open_descriptor(settings, paths)
        plugins = [cls._open_plugin(name, settings, paths) for name in settings.attributes]
        return cls(settings, detector, descriptor, plugins, load_liveness(settings, paths["liveness"]))

    @staticmethod
    def _open_plugin(name: str, settings: ModelSettings, paths: dict[str, Path]) -> tuple[AttributeModel, Engine]:
        model = attribute_plugins.lookup(name)
        path = paths.get(name, attribute_plugins.model_path(model, settings.cache_dir))
        if not path.is_file():
            raise ModelsNotPreparedError(
                f"attribute model {name!r} ({path}) is missing: run `facestream models prepare`")
        channels = 1 if model.input.colour == "gray" else 3
        size = model.input.size
        batch = settings.max_batch
        profile = ShapeProfile((1, channels, size, size), (batch, channels, size, size), (batch, channels, size, size))
        return model, open_engine(path, settings, profile)

    # -- detection ---------------------------------------------------------------------------------

    def detect(self, images: Sequence[np.ndarray], *, stream: bool = False) -> list[list[Detection]]:
        """Faces in each image (BGR uint8 HxWx3, any size), best score first (the ``models.detector``
        plug-in's; CenterFace by default). ``stream``: video frames (the detector stage), else photos."""
        return self._detector.detect(images, stream=stream)

    # -- per face ----------------------------------------------------------------------------------

    def align(self, image: np.ndarray, det: Detection) -> np.ndarray:
        """The 150x150x3 BGR uint8 chip of ``det`` (see ``models.align``), the input of ``describe``."""
        return align_chip(_as_bgr(image), det.landmarks)

    def quality(self, image: np.ndarray, det: Detection, chip: np.ndarray | None = None) -> float:
        """Quality of ``det`` in [0, 1] (scale in ``models.quality``). Pass ``chip`` (``align``'s output for
        ``det``) when it is at hand, so the face is not aligned twice."""
        chip = self.align(image, det) if chip is None else chip
        return quality_score(det.score, det.landmarks, chip, det.bbox[2] - det.bbox[0])

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float32 L2-normalised descriptors of 150x150 BGR uint8 chips (from ``align``), by the
        ``models.descriptor`` plug-in (dlib's ResNet by default)."""
        if not len(chips):
            return np.zeros((0, 128), np.float32)
        return self._descriptor.describe(chips)

    def liveness(self, faces: Sequence[tuple[np.ndarray, tuple[float, float, float, float]]]) -> list[float]:
        """Live probability in [0, 1] of each (BGR frame, x1 y1 x2 y2 box), from the liveness plug-in
        (``settings.liveness_model``; see ``models.liveness``)."""
        if self._liveness is None:
            raise ModelsNotPreparedError("no liveness model loaded: run `facestream models prepare`")
        images = [(_as_bgr(image), box) for image, box in faces]
        return self._liveness.score(images) if images else []

    def attributes(self, chips: Sequence[np.ndarray]) -> list[dict[str, dict[str, float]]]:
        """Per chip: attribute name -> label -> value, for the plug-ins in ``settings.attributes`` (a plug-in
        with several heads fills several attributes, e.g. ``age_gender`` fills ``age`` and ``gender``)."""
        results: list[dict[str, dict[str, float]]] = [{} for _ in chips]
        step = self.settings.max_batch
        for model, engine in self._plugins:
            for start in range(0, len(chips), step):
                part = chips[start : start + step]
                outputs = engine.run(attribute_plugins.prepare_input(model.input, part))
                for i, values in enumerate(attribute_plugins.to_attributes(model, outputs)):
                    results[start + i].update(values)
        return results
