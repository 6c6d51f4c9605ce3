"""Attributes on the spine: the detector and extractor agents on a real portrait put gender, age, mask and
emotion on every described face, and liveness only when ``models.event_liveness`` is on (off by default)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.detector import DetectorAgent
from agents.extractor import ExtractorAgent
from models.faces import FaceModels
from pipeline.settings import Settings
from schemas.attributes import summarise
from schemas.messages import DescribedFace, Face
from schemas.topics import DESCRIPTORS, FACES, FRAMES
from tests.unit.test_agents_handle import MemoryMedia, batch, frames_of, messages, need_faces, portrait

__all__ = ["portrait"]  # the fixture


async def _described(settings: Settings, models: FaceModels, image: np.ndarray) -> DescribedFace:
    detector = DetectorAgent(settings=settings, models=models, media=MemoryMedia())
    faces = messages(await detector.handle(batch(FRAMES, frames_of(image, 3))), FACES)
    extractor = ExtractorAgent(settings=settings, models=models)
    described = messages(await extractor.handle(batch(FACES, [f for f in faces if isinstance(f, Face)])), DESCRIPTORS)
    assert isinstance(described[0], DescribedFace)
    return described[0]


@need_faces
@pytest.mark.parametrize("event_liveness", [False, True])
async def test_described_faces_carry_attributes_and_optional_liveness(
        face_models: FaceModels, portrait: np.ndarray, event_liveness: bool) -> None:
    settings = Settings(models={**face_models.settings.model_dump(), "event_liveness": event_liveness})
    described = await _described(settings, face_models, portrait)
    summary = summarise(described.attributes)
    assert summary.gender == "male" and summary.age is not None and 40 <= summary.age <= 65
    assert summary.mask is False and summary.emotion is not None
    if event_liveness:
        assert described.face.liveness is not None and summary.liveness == described.face.liveness
        assert summary.liveness >= settings.models.liveness_threshold  # a real portrait
    else:
        assert described.face.liveness is None and "liveness" not in described.attributes
