"""Face detectors and face descriptors as plug-ins: the contracts (``models.registry`` holds the registry).

Detectors and descriptors are chosen by the settings (``models.detector``, ``models.descriptor``), in the way
attribute models are (``models.attributes``).

A plug-in is one module holding its typed config (a pydantic model with a ``kind`` tag) and its
implementation, exposed as a ``DetectorPlugin`` or ``DescriptorPlugin``. The shipped ones are
``models.detectors.centerface`` (the default detector) and ``models.descriptors.dlib_resnet`` (the default
descriptor). A site adds its own by calling ``register_detector`` / ``register_descriptor`` or by exposing the
plug-in object under the entry-point group ``facestream.detectors`` / ``facestream.descriptors`` of its
package, then naming it in ``FACESTREAM_MODELS_DETECTOR`` / ``FACESTREAM_MODELS_DESCRIPTOR``; its options
come from ``models.detector_options`` / ``models.descriptor_options`` and are validated by its config when the
models load (a wrong option fails there with the config's message, never later).

Contracts. A detector takes BGR uint8 HxWx3 images of any size and returns, per image, ``Detection``s best
score first, in that image's pixels, each with the five landmarks alignment needs (left eye, right eye,
nose, left and right mouth corner as seen in the image). A descriptor takes aligned 150x150 BGR uint8 chips
(``models.align``) and returns (N, 128) float32 L2-normalised descriptors; 128 is the width every message and
store holds, and ``models.faces.confidence``'s calibration is dlib's, so a descriptor of another family must
bring its own calibration (``facestream bench calibration``) before its scores mean the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from models.config import ModelSettings

DESCRIPTOR_SIZE = 128


class PluginError(ValueError):
    """An unknown plug-in name, or options its config refuses."""


@dataclass(frozen=True)
class Detection:
    """One detected face in an image."""

    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input image
    score: float  # detector confidence in [0, 1]
    landmarks: np.ndarray  # (5, 2) float32 (x, y): left eye, right eye, nose, mouth left, mouth right (as seen)


class FaceDetector(Protocol):
    def detect(self, images: Sequence[np.ndarray], *, stream: bool = False) -> list[list[Detection]]:
        """Faces in each image. ``stream``: the images are video frames (the detector stage), where faces down
        to ``min_face`` must be found at the frame rate; else photos (enrolment, search, verification), whose
        landmarks set a dossier's or a query's descriptor."""
        ...


class FaceDescriptor(Protocol):
    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray: ...


Paths = dict[str, Path]  # prepared model files by role (``models.prepare.prepared_paths``)


@dataclass(frozen=True)
class DetectorPlugin:
    """``configure`` turns the model settings into the plug-in's typed config (by default: its
    ``detector_options`` validated by ``config``); ``open`` builds the detector from it."""

    name: str
    config: type[BaseModel]
    open: Callable[[BaseModel, ModelSettings, Paths], FaceDetector]
    configure: Callable[[ModelSettings], BaseModel] | None = None


@dataclass(frozen=True)
class DescriptorPlugin:
    """As ``DetectorPlugin``, for descriptors (options from ``descriptor_options``)."""

    name: str
    config: type[BaseModel]
    open: Callable[[BaseModel, ModelSettings, Paths], FaceDescriptor]
    configure: Callable[[ModelSettings], BaseModel] | None = None
