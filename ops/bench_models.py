"""Benchmark: the face models on CPU (ONNX Runtime): detector frames/s, descriptor and emotion faces/s.

``run(settings) -> str`` returns the markdown section for BENCHMARKS.md (``facestream bench models``).
Frames are a real photo (``../shared/data/faces/obama-720p.jpg``, else skimage's astronaut) resized to
each size; chips are that face's aligned chip. Each figure is the median of several timed runs.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from models.faces import FaceModels
from models.prepare import prepare_models
from pipeline.settings import Settings

COMMAND = "facestream bench models"
FRAME_SIZES = ((640, 360), (1280, 720))
DESCRIPTOR_BATCHES = (1, 8, 32)
EMOTION_BATCH = 32
_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


def _source_frame() -> np.ndarray:
    photo = _FACES / "obama-720p.jpg"
    image = cv2.imread(str(photo)) if photo.is_file() else None
    if image is None:
        from skimage import data

        image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    return image


def _rate(fn: Callable[[], object], items: int, seconds: float = 2.0, rounds: int = 5) -> float:
    """Median items/s over ``rounds`` rounds of about ``seconds / rounds`` each (after one warm-up call)."""
    fn()
    rates = []
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while True:
            fn()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds:
                break
        rates.append(count * items / elapsed)
    return statistics.median(rates)


def measure(models: FaceModels, native: FaceModels) -> dict[str, float]:
    """The figures, keyed by row label."""
    frame = _source_frame()
    out: dict[str, float] = {}
    for w, h in FRAME_SIZES:
        image = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        out[f"detector, {w}x{h} frame (max side {models.settings.detector_max_side}), frames/s"] = _rate(
            lambda image=image: models.detect([image]), 1)
        if max(w, h) > models.settings.detector_max_side:
            out[f"detector, {w}x{h} frame at full resolution, frames/s"] = _rate(
                lambda image=image: native.detect([image]), 1)
    dets = models.detect([frame])[0]
    chip = models.align(frame, dets[0]) if dets else np.zeros((150, 150, 3), np.uint8)
    if dets:
        out["align + quality, faces/s"] = _rate(lambda: models.quality(frame, dets[0]), 1)
    for batch in DESCRIPTOR_BATCHES:
        chips = [chip] * batch
        out[f"descriptor (dlib ResNet), batch {batch}, faces/s"] = _rate(lambda chips=chips: models.describe(chips), batch)
    chips = [chip] * EMOTION_BATCH
    out[f"emotion (mini-Xception), batch {EMOTION_BATCH}, faces/s"] = _rate(lambda: models.attributes(chips), EMOTION_BATCH)
    return out


def run(settings: Settings) -> str:
    """Prepare the models if needed, measure on CPU, and return the ``## Models`` markdown section."""
    model_settings = settings.models.model_copy(update={"engine": "onnxruntime"})
    prepare_models(model_settings)
    models = FaceModels.load(model_settings)
    native = FaceModels.load(model_settings.model_copy(update={"detector_max_side": 1280}))
    figures = measure(models, native)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## Models",
        "",
        f"Command: `{COMMAND}` (ONNX Runtime on CPU, {model_settings.threads} intra-op threads per session).",
        (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
         f"load average {load:.1f} when measured (the machine is shared with other jobs, so these are "
         "lower bounds of what 2 idle cores do)."),
        "Targets on 2 cores: detector >= 50 frames/s at 640x360, descriptor >= 500 faces/s at batch 32.",
        "",
        "| what | rate |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value:,.0f} |" for label, value in figures.items()]
    lines += ["", _verdict(figures)]
    return "\n".join(lines) + "\n"


def _verdict(figures: dict[str, float]) -> str:
    detector = next(v for k, v in figures.items() if k.startswith("detector, 640x360"))
    descriptor = next(v for k, v in figures.items() if k.startswith("descriptor") and "batch 32" in k)
    met = [f"detector {detector:.0f} frames/s {'meets' if detector >= 50 else 'misses'} 50",
           f"descriptor {descriptor:.0f} faces/s {'meets' if descriptor >= 500 else 'misses'} 500"]
    return "Against the targets: " + "; ".join(met) + " (on this run's machine and load)."
