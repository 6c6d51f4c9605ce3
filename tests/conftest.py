"""Shared fixtures. Keep each one small; add yours below."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
FACES_DIR = SHARED_DIR / "data" / "faces"


def model_settings():  # -> models.config.ModelSettings
    """Model settings for tests: wheelhouse from FACESTREAM_MODELS_WHEELHOUSE (optional), cache from
    FACESTREAM_MODELS_CACHE_DIR or the default user cache, ONNX Runtime on CPU."""
    from models.config import ModelSettings

    values: dict[str, object] = {"engine": "onnxruntime"}
    if os.environ.get("FACESTREAM_MODELS_WHEELHOUSE"):
        values["wheelhouse"] = Path(os.environ["FACESTREAM_MODELS_WHEELHOUSE"])
    if os.environ.get("FACESTREAM_MODELS_CACHE_DIR"):
        values["cache_dir"] = Path(os.environ["FACESTREAM_MODELS_CACHE_DIR"])
    return ModelSettings(**values)


@pytest.fixture(scope="session")
def face_models():  # -> models.faces.FaceModels
    """The real face models, prepared once per session (downloads the pinned sources if needed)."""
    from models.faces import FaceModels
    from models.prepare import prepare_models

    settings = model_settings()
    prepare_models(settings)
    return FaceModels.load(settings)
