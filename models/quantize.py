"""Static int8 quantisation of the detector and the descriptor (ONNX Runtime, QDQ, calibrated on real faces).

``facestream models prepare`` builds ``centerface-int8.onnx`` and ``dlib_resnet-int8.onnx`` next to the
float models; ``models.detector_precision`` / ``models.descriptor_precision`` choose which one runs (the
float models stay selectable, and TensorRT always builds from the float files).

How, and why this way (measured on the shared faces, 2 cores with AVX-512 VNNI, see BENCHMARKS.md):

- Weights int8 per output channel, activations uint8 asymmetric, QDQ format (ONNX Runtime fuses it into
  integer convolutions). The opset is raised to 13 first (per-channel ``DequantizeLinear`` needs ``axis``).
- Calibration data: real frames and real aligned chips. Frames: every 9th frame of the shared clip and the
  shared photos, letterboxed into one 640x384 input (the detector's small-face build, for 720p and larger
  inputs, also gets every 3rd clip frame at 0.35 scale: ``calibration_sets``); chips: every face CenterFace
  finds in every 3rd frame of the clip and in the photos, aligned by ``models.align`` exactly as the
  pipeline does. Without the shared media (``../shared/data/faces``) skimage's astronaut stands in, at several scales.
- Descriptor: percentile calibration (99.999 %): MinMax let a few outlier activations widen the ranges and
  gave cosine 0.991 to float on the worst chip; percentile gives >= 0.995 on every chip.
- Detector: MinMax, with the four output heads (and the heatmap's sigmoid) and the stem (the first 9
  nodes: stride-2 convolutions and the first block, where small faces are still a few pixels) left in
  float. Quantising everything lost 192 of the clip's faces (on 109 of 275 frames, mostly small
  audience faces); heads and stem in float, the int8 and float detectors differ on 30 frames (10 faces
  more, 23 fewer, near the threshold) for about half the CPU time. Percentile calibration helped less.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import onnx
from onnx import version_converter

from models.align import align_chip
from models.centerface import as_float_input, decode, plan_input, preprocess

log = logging.getLogger(__name__)

QUANTIZER_VERSION = "int8-qdq-3"
DETECTOR_FLOAT_STEM = 9  # first nodes of CenterFace kept float (stem + first block, 1/2 and 1/4 resolution)
SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
CALIBRATION_SIZE = (384, 640)  # detector calibration input, height x width
Role = Literal["detector", "descriptor"]


SMALL_FACE_SCALE = 0.35  # the small-face detector build also sees the clip's frames at this scale


@dataclass(frozen=True)
class Calibration:
    """The calibration sets: detector inputs at the clip's scale, the same with the clip's frames shrunk to
    ``SMALL_FACE_SCALE`` added, and descriptor inputs (aligned chips)."""

    name: str
    frames: list[np.ndarray]
    small_face_frames: list[np.ndarray]
    chips: list[np.ndarray]

    def inputs(self, which: str) -> list[np.ndarray]:
        return {"frames": self.frames, "small-face frames": self.small_face_frames, "chips": self.chips}[which]


def calibration_sets(float_detector: Path, faces_dir: Path = SHARED_FACES) -> Calibration:
    """Every calibration set as model inputs; chips come from the float detector's faces (``calibration_chips``).

    Why a small-face set (one-off measurements, BENCHMARKS.md "Detection input resolution and the int8
    detector"): calibrated at the clip's scale only, the int8 detector scores small faces lower than float;
    the small-faces crowd's five 32 px faces in a 1080p frame detected at 960x540 (16 px in the input, after
    the pipeline's JPEG q90) scored at least 0.47-0.49 against float's 0.51-0.55 (threshold 0.5: one face
    missed in the first frame). With every 3rd clip frame at ``SMALL_FACE_SCALE`` added (its faces at a third
    of their size) the lowest is 0.56; on crowds of other portraits (28-60 px) it finds 475 of 480 face-frames
    (float 475, the clip-scale build 472), and on the clip scaled to 1080p 187 of float's 190 faces >= 40 px
    (the clip-scale build 185). The clip-scale build stays where faces are larger (640x360 inputs), where
    the clip's events and identities are guarded end to end."""
    name, frames, small_faces, images = _calibration_images(faces_dir)
    return Calibration(name, [detector_input(f) for f in frames],
                       [detector_input(f) for f in frames + small_faces],
                       [descriptor_input(c) for c in calibration_chips(float_detector, images)])


def _calibration_images(faces_dir: Path) -> tuple[str, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(name of the set, frames for the detector, the clip's frames shrunk for its small-face build, images to
    take chips from), BGR uint8."""
    clip = faces_dir / "short_hamilton_clip.mp4"
    if clip.is_file():
        cap = cv2.VideoCapture(str(clip))
        frames: list[np.ndarray] = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
        photos = [img for p in sorted(faces_dir.glob("*.jpg")) + sorted(faces_dir.glob("*.png"))
                  if (img := cv2.imread(str(p))) is not None]
        return "shared-faces", frames[::9] + photos, _shrunk(frames[::3]), frames[::3] + photos
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    scaled = [cv2.resize(astronaut, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for s in (1.0, 0.6, 0.35, 0.2)]
    return "skimage-astronaut", scaled, _shrunk(scaled), scaled + [cv2.flip(img, 1) for img in scaled]


def _shrunk(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.resize(f, None, fx=SMALL_FACE_SCALE, fy=SMALL_FACE_SCALE, interpolation=cv2.INTER_AREA)
            for f in frames]


def calibration_chips(float_detector: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """Aligned 150x150 BGR chips (``models.align``, as the pipeline aligns) of every face the float CenterFace
    (``float_detector``, at its defaults: threshold 0.5, longer side 640, min_face 32) finds in ``images``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(float_detector), providers=["CPUExecutionProvider"])
    chips = []
    for image in images:
        plan = plan_input(image.shape[0], image.shape[1], 640, 32)
        batch = np.zeros((1, plan.height, plan.width, 3), np.uint8)
        preprocess(image, plan, batch[0])
        raw = decode(tuple(m[0] for m in session.run(None, {"input": as_float_input(batch)})), 0.5, 0.3)
        scale = np.array([plan.scale_x, plan.scale_y], np.float32)
        chips += [align_chip(image, points / scale) for points in raw.landmarks]
    return chips


def detector_input(image: np.ndarray) -> np.ndarray:
    """[1, 3, 384, 640] float32 RGB 0..255: ``image`` shrunk to fit, top-left aligned, zero padded."""
    height, width = CALIBRATION_SIZE
    h, w = image.shape[:2]
    scale = min(width / w, height / h, 1.0)
    image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    batch = np.zeros((1, 3, height, width), np.float32)
    batch[0, :, : image.shape[0], : image.shape[1]] = image[:, :, ::-1].transpose(2, 0, 1)
    return batch


def descriptor_input(chip: np.ndarray) -> np.ndarray:
    """[1, 3, 150, 150] float32 RGB 0..255 of a BGR chip, as ``FaceModels.describe`` feeds it."""
    return np.ascontiguousarray(chip[:, :, ::-1].transpose(2, 0, 1)[None], np.float32)


class _Reader:
    """An ONNX Runtime ``CalibrationDataReader`` over prepared input batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter([{name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def rewind(self) -> None:  # part of the reader protocol; one pass is all calibration needs
        return None


def _output_heads(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from each graph output back to (and including) its producing Conv."""
    producer = {out: node for node in model.graph.node for out in node.output}
    heads: list[str] = []
    for output in model.graph.output:
        node = producer[output.name]
        heads.append(node.name)
        while node.op_type != "Conv" and node.input[0] in producer:
            node = producer[node.input[0]]
            heads.append(node.name)
    return heads


def quantize(role: Role, float_onnx: Path, batches: list[np.ndarray], dst: Path) -> None:
    """Write the int8 QDQ model of ``float_onnx`` (the ``role``'s float model) to ``dst``, calibrated on
    ``batches`` (inputs as ``detector_input`` / ``descriptor_input`` make them)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="facestream-quant-") as tmp:
        model = onnx.load(str(float_onnx))
        if model.opset_import[0].version < 13:
            model = version_converter.convert_version(model, 13)
        for i, node in enumerate(model.graph.node):
            if not node.name:
                node.name = f"{node.op_type.lower()}_{i}"
        staged, pre = Path(tmp) / "staged.onnx", Path(tmp) / "pre.onnx"
        onnx.save(model, str(staged))
        quant_pre_process(str(staged), str(pre), skip_symbolic_shape=True)
        input_name = model.graph.input[0].name
        excluded: list[str] = []
        if role == "detector":
            staged_model = onnx.load(str(pre))
            excluded = _output_heads(staged_model) + [n.name for n in staged_model.graph.node[:DETECTOR_FLOAT_STEM]]
        method = CalibrationMethod.MinMax if role == "detector" else CalibrationMethod.Percentile
        with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its progress
            quantize_static(
                str(pre), str(dst), _Reader(input_name, batches), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                nodes_to_exclude=excluded, extra_options={"ActivationSymmetric": False},
            )
