"""Extractor agent: faces -> descriptors. Batches the aligned chips through the descriptor and attribute models."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from agents.detector import decode_jpeg
from models.faces import FaceModels
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import DescribedFace, Face
from schemas.topics import DESCRIPTORS, FACES


class ExtractorAgent(AgentBase):
    name = "extractor"
    inputs = (FACES,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: FaceModels | None = None

    async def start(self) -> None:
        self.models = await asyncio.get_running_loop().run_in_executor(None, FaceModels.load, self.settings.models)

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        faces = [item.message for item in batch if isinstance(item.message, Face)]
        described = await asyncio.get_running_loop().run_in_executor(None, self._describe, faces)
        by_id = {d.face.face_id: d for d in described}
        outputs = []
        for item in batch:
            msg = item.message
            out = by_id[msg.face_id] if isinstance(msg, Face) else msg  # StreamEnd goes on in order
            outputs.append(Output(DESCRIPTORS, msg.camera_id, out))
        return outputs

    def _describe(self, faces: list[Face]) -> list[DescribedFace]:
        assert self.models is not None
        if not faces:
            return []
        chips = [decode_jpeg(f.chip_jpeg) for f in faces]
        descriptors = self.models.describe(chips)
        attributes = self.models.attributes(chips)
        return [
            DescribedFace(face=f, descriptor=np.asarray(d, np.float32).tolist(), attributes=a)
            for f, d, a in zip(faces, descriptors, attributes, strict=True)
        ]


def build(settings: Settings) -> Any:
    return ExtractorAgent(settings)
