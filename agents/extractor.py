"""Extractor agent: faces -> descriptors. Batches the aligned chips through the descriptor and attribute models.

The chip arrives raw (or as JPEG, see ``Face``) and is dropped from the face passed on: the matcher and
everything after it need the descriptor, not the pixels.

A face's descriptor is its track's: the face and its support (the track's other best faces, see
``Face.support``) are all described and combined by ``track_descriptor``; attributes come from the face shown.
"""

from __future__ import annotations

import asyncio

import numpy as np

from agents.detector import decode_jpeg
from models.align import CHIP_SIZE
from models.faces import FaceModels
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import DescribedFace, Face, StreamEnd
from schemas.topics import DESCRIPTORS, FACES


class ExtractorAgent(AgentBase):
    name = "extractor"
    replay_safe = True  # deterministic output ids: commits may be coalesced (pipeline.stage)
    inputs = (FACES,)

    def __init__(self, *, settings: Settings, models: FaceModels) -> None:
        self.settings = settings
        self.models = models

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        faces = [item.message for item in batch if isinstance(item.message, Face)]
        described = await asyncio.get_running_loop().run_in_executor(None, self._describe, faces)
        by_id = {d.face.face_id: d for d in described}
        outputs = []
        for item in batch:
            msg = item.message
            if not isinstance(msg, Face | StreamEnd):
                continue  # the faces topic carries nothing else
            out = by_id[msg.face_id] if isinstance(msg, Face) else msg  # StreamEnd goes on in order
            outputs.append(Output(DESCRIPTORS, msg.camera_id, out))
        return outputs

    def _describe(self, faces: list[Face]) -> list[DescribedFace]:
        if not faces:
            return []
        chips = [chip_image(f) for f in faces]
        attributes = self.models.attributes(chips)
        groups = [[chip, *support_images(f)] for f, chip in zip(faces, chips, strict=True)]
        flat = self.models.describe([c for group in groups for c in group])
        out, start = [], 0
        for face, group, attrs in zip(faces, groups, attributes, strict=True):
            if face.liveness is not None:  # scored by the detector (models.event_liveness)
                attrs["liveness"] = {"live": face.liveness}
            weights = np.asarray([face.quality, *(s.quality for s in face.support)], np.float32)
            descriptor = track_descriptor(flat[start : start + len(group)], weights)
            start += len(group)
            out.append(DescribedFace(
                face=face.model_copy(update={"chip": b"", "support": [], "support_chips": b""}),
                descriptor=descriptor.tolist(), attributes=attrs, faces_used=len(group)))
        return out


def track_descriptor(descriptors: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """(128,) float32: the quality-weighted mean of (N, 128) L2-normalised descriptors, L2-normalised.

    Weights are the qualities (floored at 0.01, so a track of poor faces still averages them all). The mean
    of normalised descriptors is the direction closest, in summed cosine, to all of them: one noisy frame
    moves it little, which is why deciding on it beats deciding on the single best face."""
    weights = np.maximum(qualities.astype(np.float32), 0.01)
    mean: np.ndarray = (descriptors.astype(np.float32) * weights[:, None]).sum(axis=0)
    out: np.ndarray = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    return out


def support_images(face: Face) -> list[np.ndarray]:
    """The chips of the face's support (``Face.support_chips``) as 150x150x3 BGR uint8 arrays.

    Raises ``ValueError`` when the sizes do not add up or a chip is not one."""
    if sum(s.size for s in face.support) != len(face.support_chips):
        raise ValueError(f"support sizes add up to {sum(s.size for s in face.support)} bytes, "
                         f"support_chips holds {len(face.support_chips)}")
    out, start = [], 0
    for s in face.support:
        blob = face.support_chips[start : start + s.size]
        start += s.size
        out.append(chip_image(face.model_copy(update={"chip": blob})))
    return out


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

