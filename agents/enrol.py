"""Turning a portrait into a dossier face: the largest face, aligned and described like every other."""

from __future__ import annotations

import numpy as np

from models.faces import Detection, FaceModels


class NoFaceError(ValueError):
    """The image holds no detectable face."""


def largest_face(models: FaceModels, image: np.ndarray) -> Detection:
    faces = models.detect([image])[0]
    if not faces:
        raise NoFaceError("no face found in the image")
    return max(faces, key=lambda d: (d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1]))


def portrait_descriptor(models: FaceModels, image: np.ndarray) -> np.ndarray:
    """(128,) float32 L2-normalised descriptor of the largest face of a BGR image."""
    face = largest_face(models, image)
    descriptor: np.ndarray = models.describe([models.align(image, face)])[0]
    return descriptor
