"""The dlib ResNet descriptor plug-in (the default): its typed config and implementation.

The weights are dlib's face-recognition ResNet-29 (``face_recognition_models``), converted to ONNX by
``models.dlib_resnet``. Input: aligned 150x150 BGR uint8 chips (``models.align``); output: 128-D descriptors,
L2-normalised by ``describe`` (``raw`` keeps dlib's own scale, where L2 < 0.6 means the same person).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.align import CHIP_SIZE
from models.engines import Engine, ShapeProfile, open_concurrent
from models.plugins import DESCRIPTOR_SIZE, DescriptorPlugin, Paths
from models.prepare import weights_for

if TYPE_CHECKING:
    from models.config import ModelSettings


class DlibResnetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["dlib_resnet"] = "dlib_resnet"
    max_batch: int = Field(32, ge=1, description="Most chips per inference call.")
    precision: Literal["float32", "int8"] = Field(
        "int8", description="The int8 build (models.quantize) or float weights.")


class DlibResnetDescriptor:
    """Safe to call from several threads."""

    def __init__(self, config: DlibResnetConfig, engine: Engine) -> None:
        self.config = config
        self._engine = engine

    def raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float32 descriptors in dlib's own scale."""
        out = np.zeros((len(chips), DESCRIPTOR_SIZE), np.float32)
        step = self.config.max_batch
        for start in range(0, len(chips), step):
            part = chips[start : start + step]
            batch = np.empty((len(part), CHIP_SIZE, CHIP_SIZE, 3), np.uint8)  # RGB NHWC: the engine casts
            for row, chip in enumerate(part):
                cv2.cvtColor(chip, cv2.COLOR_BGR2RGB, dst=batch[row])
            out[start : start + len(part)] = self._engine.run(batch)[0]
        return out

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float32 L2-normalised descriptors."""
        out = self.raw(chips)
        normalised: np.ndarray = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return normalised


def configure(settings: ModelSettings) -> DlibResnetConfig:
    """The config from ``max_batch``, then ``descriptor_options`` on top."""
    return DlibResnetConfig.model_validate({"max_batch": settings.max_batch,
                                             "precision": settings.descriptor_precision, **settings.descriptor_options})


def open_dlib_resnet(config: BaseModel, settings: ModelSettings, paths: Paths) -> DlibResnetDescriptor:
    assert isinstance(config, DlibResnetConfig)
    batch = config.max_batch
    engine = open_concurrent(weights_for(paths, "descriptor", config.precision, settings), settings, ShapeProfile(
        (1, 3, CHIP_SIZE, CHIP_SIZE), (batch, 3, CHIP_SIZE, CHIP_SIZE), (batch, 3, CHIP_SIZE, CHIP_SIZE)),
        image_input=True)
    return DlibResnetDescriptor(config, engine)


PLUGIN = DescriptorPlugin(name="dlib_resnet", config=DlibResnetConfig, open=open_dlib_resnet, configure=configure)
