"""Extractor agent: faces -> descriptors. Batches the aligned chips through the descriptor and attribute models.

The chip arrives raw (or as JPEG, see ``Face``) and is dropped from the face passed on: the matcher and
everything after it need the descriptor, not the pixels."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from agents.detector import decode_jpeg
from models.align import CHIP_SIZE
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
        chips = [chip_image(f) for f in faces]
        descriptors = self.models.describe(chips)
        attributes = self.models.attributes(chips)
        return [
            DescribedFace(face=f.model_copy(update={"chip": b""}), descriptor=np.asarray(d, np.float32).tolist(),
                          attributes=a)
            for f, d, a in zip(faces, descriptors, attributes, strict=True)
        ]


def chip_image(face: Face) -> np.ndarray:
    """The face's aligned chip as a 150x150x3 BGR uint8 array. Raises ``ValueError`` when it is not one."""
    if face.chip_encoding == "jpeg":
        chip = decode_jpeg(face.chip)
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chip JPEG is {chip.shape[1]}x{chip.shape[0]}, not {CHIP_SIZE}x{CHIP_SIZE}")
        return chip
    expected = CHIP_SIZE * CHIP_SIZE * 3
    if len(face.chip) != expected:
        raise ValueError(f"raw BGR chip has {len(face.chip)} bytes, expected {expected} ({CHIP_SIZE}x{CHIP_SIZE}x3)")
    return np.frombuffer(face.chip, np.uint8).reshape(CHIP_SIZE, CHIP_SIZE, 3)


def build(settings: Settings) -> Any:
    return ExtractorAgent(settings)
