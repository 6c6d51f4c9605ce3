"""Passive, per-frame liveness: Faceplugin's MiniFASNet-like ONNX classifier, as a replaceable plug-in.

Source: npm ``faceplugin-face-recognition-js@0.0.1``, ``model/fr_liveness.onnx`` (1.9 MB, MIT in the
package). **Its training data is not disclosed**: nobody outside its authors knows which attacks, cameras or
people it has seen, so treat its score as one signal, calibrate the threshold on your own cameras, or bring
your own model (``LivenessModel`` below, the ``facestream.liveness`` entry-point group and
``FACESTREAM_MODELS_LIVENESS_MODEL``).

Model contract of the shipped file (after ``convert_liveness``, which only makes the batch dynamic):

- input ``input``: float32 [B, 3, 128, 128], RGB, 0..255, the face box enlarged 2.7x around its centre
  (shifted, not clipped, to stay inside the frame, as the package's ``alignLivenessImage``), resized;
- output ``output``: float32 [B, 3] logits; softmax index 0 is "live" (1 and 2 are the attack classes).

``LivenessModel.score`` returns the live probability in [0, 1] for faces given as (frame, box): the model
needs context around the face (screen edges, moiré, paper), so it works on the full frame, not on the
aligned chip the descriptor uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnx

from models.config import ModelSettings
from models.engines import Engine, ShapeProfile, open_engine

CONVERTER_VERSION = "liveness-faceplugin-dyn-1"
INPUT_SIZE = 128
BOX_SCALE = 2.7
ENTRY_POINT_GROUP = "facestream.liveness"
BBox = tuple[float, float, float, float]


def convert_liveness(src: Path, dst: Path) -> None:
    """Copy ``fr_liveness.onnx`` with a dynamic batch dimension (the graph's reshapes read the batch size)."""
    model = onnx.load(str(src))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "B"
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


def context_crop(image: np.ndarray, bbox: BBox, scale: float = BOX_SCALE, size: int = INPUT_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` BGR crop of ``bbox`` (x1, y1, x2, y2 pixels) enlarged ``scale`` times around its
    centre, the enlargement capped by the frame and the window shifted back inside it (Faceplugin's rule)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = bbox
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    s = min((h - 1) / bh, (w - 1) / bw, scale)
    nw, nh = bw * s, bh * s
    cx, cy = x1 + bw / 2, y1 + bh / 2
    left, top = cx - nw / 2, cy - nh / 2
    left = min(max(left, 0.0), max(w - 1 - nw, 0.0))
    top = min(max(top, 0.0), max(h - 1 - nh, 0.0))
    xa, ya = int(left), int(top)
    xb, yb = min(w, max(xa + 1, int(left + nw))), min(h, max(ya + 1, int(top + nh)))
    return cv2.resize(image[ya:yb, xa:xb], (size, size), interpolation=cv2.INTER_LINEAR)


class LivenessModel(Protocol):
    """A liveness plug-in: live probability in [0, 1] of each face, given its frame and box.

    ``score`` is blocking (run it in an executor) and thread-safe. Frames are BGR uint8 HxWx3; boxes are
    (x1, y1, x2, y2) pixels of their frame."""

    name: str

    def score(self, faces: Sequence[tuple[np.ndarray, BBox]]) -> list[float]: ...


class FacepluginLiveness:
    """The shipped plug-in: ``fr_liveness.onnx`` from the model cache (contract in the module docstring)."""

    name = "faceplugin"

    def __init__(self, engine: Engine, max_batch: int) -> None:
        self._engine = engine
        self._max_batch = max_batch

    @classmethod
    def load(cls, settings: ModelSettings, path: Path) -> FacepluginLiveness:
        batch = settings.max_batch
        shape = (3, INPUT_SIZE, INPUT_SIZE)
        engine = open_engine(path, settings, ShapeProfile((1, *shape), (batch, *shape), (batch, *shape)))
        return cls(engine, batch)

    def score(self, faces: Sequence[tuple[np.ndarray, BBox]]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(faces), self._max_batch):
            part = faces[start : start + self._max_batch]
            crops = [context_crop(image, bbox)[:, :, ::-1].transpose(2, 0, 1) for image, bbox in part]
            logits = self._engine.run(np.stack(crops).astype(np.float32))[0]
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            out += (shifted[:, 0] / shifted.sum(axis=1)).astype(float).tolist()
        return out


def load_liveness(settings: ModelSettings, cache_path: Path) -> LivenessModel:
    """The liveness plug-in ``settings.liveness_model`` names: ``faceplugin`` (shipped, ``cache_path``) or a
    ``facestream.liveness`` entry point, a callable ``(settings) -> LivenessModel``.

    Raises ``KeyError`` naming the known plug-ins when there is none of that name."""
    name = settings.liveness_model
    if name == FacepluginLiveness.name:
        return FacepluginLiveness.load(settings, cache_path)
    found = {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        raise KeyError(f"unknown liveness plug-in {name!r}; known: {sorted({FacepluginLiveness.name, *found})}")
    model: LivenessModel = found[name].load()(settings)
    return model
