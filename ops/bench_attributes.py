"""Benchmark: cost per face of the attribute and liveness models, and the liveness threshold's calibration.

``run(settings) -> str`` returns the markdown section for BENCHMARKS.md (``facestream bench attributes``).
Cost: faces/s of each model on the aligned chip (or, for liveness, the frame and box) of a real portrait,
batch 1 and 16, ONNX Runtime on CPU. Calibration: per-frame live probability of the largest face in every
3rd frame of the shared Hamilton clip (genuine) against the same frames shown as synthesised replays
(``models.synthetic.replay``: screen, print, phone), and per-clip averages over windows of 10 scored frames
(what ``POST /v1/video-liveness`` decides on).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from models import attributes as attribute_plugins
from models.faces import FaceModels
from models.prepare import prepare_models
from models.synthetic import REPLAYS, replay
from ops.bench_models import _rate, _source_frame
from pipeline.settings import Settings

COMMAND = "facestream bench attributes"
_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "short_hamilton_clip.mp4"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
WINDOW = 10


def _costs(models: FaceModels) -> dict[str, float]:
    frame = _source_frame()
    det = models.detect([frame])[0][0]
    chip = models.align(frame, det)
    out: dict[str, float] = {}
    for plugin, engine in models._plugins:
        for batch in (1, 16):
            tensor = attribute_plugins.prepare_input(plugin.input, [chip] * batch)
            out[f"{plugin.name} ({plugin.file}), batch {batch}"] = _rate(
                lambda tensor=tensor, engine=engine: engine.run(tensor), batch)
    for batch in (1, 16):
        faces = [(frame, det.bbox)] * batch
        out[f"liveness (crop 2.7x box + model), batch {batch}"] = _rate(
            lambda faces=faces: models.liveness(faces), batch)
    return out


def _scores(models: FaceModels) -> dict[str, list[float]]:
    capture = cv2.VideoCapture(str(_CLIP))
    scores: dict[str, list[float]] = {"genuine": [], **{k: [] for k in REPLAYS}}
    n = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if n % 3 == 0:
            for kind, image in [("genuine", frame), *[(k, replay(frame, k, seed=n)) for k in REPLAYS]]:
                dets = models.detect([image])[0]
                if dets:
                    best = max(dets, key=lambda d: d.bbox[2] - d.bbox[0])
                    scores[kind].append(models.liveness([(image, best.bbox)])[0])
        n += 1
    capture.release()
    return scores


def _windows(values: list[float]) -> list[float]:
    return [float(np.mean(values[i : i + WINDOW])) for i in range(0, len(values) - WINDOW + 1, WINDOW // 2)]


def run(settings: Settings) -> str:
    """Prepare the models if needed, measure, and return the markdown section."""
    shipped = [m.name for m in attribute_plugins.SHIPPED]  # all of them, the opt-in mask included
    model_settings = settings.models.model_copy(update={"engine": "onnxruntime", "attributes": [
        *shipped, *(name for name in settings.models.attributes if name not in shipped)]})
    prepare_models(model_settings)
    models = FaceModels.load(model_settings)
    costs = _costs(models)
    start = time.perf_counter()
    scores = _scores(models) if _CLIP.is_file() else {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## Face attributes and liveness (issue 14)",
        "",
        f"Command: `{COMMAND}` (ONNX Runtime on CPU, {model_settings.threads} threads; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}: measured under load).",
        "",
        "| model | faces/s | ms per face |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {rate:,.0f} | {1000 / rate:.1f} |" for label, rate in costs.items()]
    if scores:
        lines += ["", f"Liveness calibration ({time.perf_counter() - start:.0f} s): largest face of every 3rd frame "
                  "of the Hamilton clip, genuine vs the same frames as synthesised replays. Per frame: count, "
                  "min / median / max, and the share at or above each threshold; per clip: means over windows "
                  f"of {WINDOW} scored frames.", "",
                  "| set | frames | min / median / max | " + " | ".join(f">= {t}" for t in THRESHOLDS) + " |",
                  "|---|---|---|" + "---|" * len(THRESHOLDS)]
        for kind, values in scores.items():
            for label, vals in ((f"{kind}, per frame", values), (f"{kind}, per {WINDOW}-frame clip", _windows(values))):
                if not vals:
                    continue
                v = np.asarray(vals)
                shares = " | ".join(f"{(v >= t).mean():.0%}" for t in THRESHOLDS)
                lines.append(f"| {label} | {len(v)} | {v.min():.3f} / {np.median(v):.3f} / {v.max():.3f} | {shares} |")
    return "\n".join(lines) + "\n"
