"""Benchmark: the face models on CPU (ONNX Runtime): detector frames/s, descriptor and emotion faces/s, each
at float and int8 precision, and the ONNX Runtime session options (threads, execution mode, graph
optimisation, spin-waiting, session opening) measured on the detector and the descriptor.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.centerface import plan_input, preprocess
from models.config import ModelSettings
from models.engines import OnnxRuntimeEngine, OrtOptions
from models.faces import FaceModels
from models.prepare import prepare_models, prepared_paths, weights_for
from pipeline.settings import Settings

COMMAND = "facestream bench models"
FRAME_SIZES = ((640, 360), (1280, 720))
DESCRIPTOR_BATCHES = (1, 8, 32)
EMOTION_BATCH = 32
ROUNDS = 7  # timed rounds per figure: the table gives their median and their range
WARM_UP_S = 0.5
ROUND_S = 0.3
CONCURRENT_FRAMES = 2  # frames per detect call in the "frames per call" rows (the stage's batch of due frames)
FULL_ACCURACY_SIDE = 640  # the detector's former input cap: a 640x360 frame at its own size (padded to 640x384)
_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


def _source_frame() -> np.ndarray:
    photo = _FACES / "obama-720p.jpg"
    image = cv2.imread(str(photo)) if photo.is_file() else None
    if image is None:
        from skimage import data

        image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    return image


@dataclass(frozen=True)
class Rate:
    """One figure: the median rate over the timed rounds, the slowest and fastest round, and the process CPU
    time per item (ms, all threads; less sensitive than the rate to other jobs taking the cores)."""

    median: float
    low: float
    high: float
    cpu_ms: float

    def cells(self) -> str:
        return f"{self.median:,.0f} | {self.low:,.0f}-{self.high:,.0f} | {self.cpu_ms:.1f}"


Case = tuple[Callable[[], object], int]  # a call to time, and how many items (frames, faces) it does


def _measure_all(cases: dict[str, Case], rounds: int = ROUNDS, seconds: float = ROUND_S) -> dict[str, Rate]:
    """Every case timed in ``rounds`` rounds, the rounds interleaved (each round runs every case for about
    ``seconds``, in turn, reversed every other round), after a warm-up of about ``WARM_UP_S`` each: a
    period when other jobs take the cores slows every row alike instead of deciding one row's figure."""
    for fn, _items in cases.values():
        warm_until = time.perf_counter() + WARM_UP_S
        fn()
        while time.perf_counter() < warm_until:
            fn()
    rates: dict[str, list[float]] = {label: [] for label in cases}
    cpu: dict[str, list[float]] = {label: [] for label in cases}
    for round_ in range(rounds):
        for label in list(cases) if round_ % 2 == 0 else list(reversed(cases)):
            fn, items = cases[label]
            count, start, started_cpu = 0, time.perf_counter(), time.process_time()
            while True:
                fn()
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            rates[label].append(count * items / elapsed)
            cpu[label].append((time.process_time() - started_cpu) * 1000 / (count * items))
    return {label: Rate(statistics.median(r), min(r), max(r), statistics.median(cpu[label]))
            for label, r in rates.items()}


def _measure(fn: Callable[[], object], items: int, seconds: float = 2.1, rounds: int = ROUNDS) -> Rate:
    """One case alone (``_measure_all``), in ``rounds`` rounds totalling about ``seconds``."""
    return _measure_all({"": (fn, items)}, rounds, seconds / rounds)[""]


def _rate(fn: Callable[[], object], items: int, seconds: float = 2.0, rounds: int = 5) -> float:
    """The median items/s of ``_measure`` (for the benches that quote one figure)."""
    return _measure(fn, items, seconds, rounds).median


def _clip_frames() -> list[np.ndarray]:
    """Every 5th frame of the shared clip (640x360, real faces: what the detector sees), else the photo."""
    cap = cv2.VideoCapture(str(_FACES / "short_hamilton_clip.mp4"))
    frames, index = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % 5 == 0:
            frames.append(frame)
        index += 1
    cap.release()
    return frames or [cv2.resize(_source_frame(), (640, 360), interpolation=cv2.INTER_AREA)]


class _Cycle:
    """The next ``n`` frames of a list, round and round (each call a different frame, as from a camera)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self._frames, self._at = frames, 0

    def take(self, n: int) -> list[np.ndarray]:
        out = [self._frames[(self._at + i) % len(self._frames)] for i in range(n)]
        self._at = (self._at + n) % len(self._frames)
        return out


def measure(models: FaceModels, native: FaceModels, int8: FaceModels, float_: FaceModels,
            full: FaceModels, single: FaceModels | None = None) -> dict[str, Rate]:
    """The figures, keyed by row label, all through the plug-ins' code (pre- and post-processing included).
    ``models``: as configured; ``int8`` / ``float_``: both models at that precision; ``full``: the float
    detector at the former 640 px input (full accuracy); ``native``: ``models`` without the side cap;
    ``single``: ``models`` on one intra-op thread (its CPU-ms per frame is the cheapest way to detect one
    frame; the other core stays free for the pipeline's other stages)."""
    clip = _clip_frames()
    side, min_face = models.settings.detector_max_side, models.settings.detector_min_face
    configured = models.settings.detector_precision
    out: dict[str, Case] = {}
    for w, h in FRAME_SIZES:
        frames = _Cycle([f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)) for f in clip])
        plan = plan_input(h, w, side, min_face)
        where = f"{w}x{h} frame (max side {side}: input {plan.width}x{plan.height})"
        for label, each in (("float", float_), ("int8", int8), (configured, models)):
            out[f"detector {label}, {where}, 1 frame per call, frames/s"] = (
                lambda each=each, frames=frames: each.detect(frames.take(1), stream=True), 1)
        out[f"detector {configured}, {where}, {CONCURRENT_FRAMES} frames per call, frames/s"] = (
            lambda frames=frames: models.detect(frames.take(CONCURRENT_FRAMES), stream=True), CONCURRENT_FRAMES)
        if (w, h) == FRAME_SIZES[0] and single is not None:
            out[f"detector {configured}, {where}, 1 frame per call on one thread (models.threads 1), frames/s"] = (
                lambda frames=frames: single.detect(frames.take(1), stream=True), 1)
        if max(w, h) <= full.settings.detector_max_side:
            whole = plan_input(h, w, full.settings.detector_max_side, full.settings.detector_min_face)
            out[f"detector float, {w}x{h} frame at full accuracy (max side {full.settings.detector_max_side}: input "
                f"{whole.width}x{whole.height}), 1 frame per call, frames/s"] = (
                lambda frames=frames: full.detect(frames.take(1), stream=True), 1)
        if max(w, h) > side:
            out[f"detector {configured}, {w}x{h} frame at full resolution, 1 frame per call, frames/s"] = (
                lambda frames=frames: native.detect(frames.take(1), stream=True), 1)
    frame = _source_frame()
    dets = models.detect([frame])[0]
    chip = models.align(frame, dets[0]) if dets else np.zeros((150, 150, 3), np.uint8)
    if dets:
        out["align + quality, faces/s"] = (lambda: models.quality(frame, dets[0]), 1)
    for batch in DESCRIPTOR_BATCHES:
        chips = [chip] * batch
        for label, each in (("float", float_), ("int8", int8)):
            out[f"descriptor {label} (dlib ResNet), batch {batch}, faces/s"] = (
                lambda chips=chips, each=each: each.describe(chips), batch)
    chips = [chip] * EMOTION_BATCH
    out[f"attributes ({', '.join(models.settings.attributes)}), batch {EMOTION_BATCH}, faces/s"] = (
        lambda: models.attributes(chips), EMOTION_BATCH)
    return _measure_all(out)


# (label, intra-op threads, options): the ONNX Runtime alternatives measured; the first is the default
ORT_VARIANTS: tuple[tuple[str, int, OrtOptions], ...] = (
    ("default: 2 threads, sequential, all optimisations, no spinning", 2, OrtOptions()),
    ("1 intra-op thread", 1, OrtOptions()),
    ("spin-waiting on", 2, OrtOptions(spinning=True)),
    ("parallel execution mode (2 inter-op threads)", 2, OrtOptions(parallel=True)),
    ("basic graph optimisation only", 2, OrtOptions(optimization="basic")),
    ("extended graph optimisation", 2, OrtOptions(optimization="extended")),
)


def _two_at_once(engine: OnnxRuntimeEngine, batch: np.ndarray, workers: ThreadPoolExecutor) -> Callable[[], object]:
    """Two runs of ``engine`` at once (two halves of ``batch``, or ``batch`` twice when it holds one input)."""
    halves = np.array_split(batch, 2) if len(batch) > 1 else [batch, batch]
    return lambda: [f.result() for f in [workers.submit(engine.run, half) for half in halves]]


def ort_options(settings: ModelSettings) -> list[tuple[str, list[float]]]:
    """Per variant: [detector float, detector int8 (640x360 frames/s), descriptor float, descriptor int8
    (batch 32, faces/s)], and a last row of session opening times (ms) with the default options. The engines
    are opened as the plug-ins open them (uint8 image input, ``models.engines.image_input_model``) and fed
    prepared inputs: the rates leave out only the plug-ins' Python pre- and post-processing."""
    paths = prepared_paths(settings.cache_dir)
    frame = cv2.resize(_source_frame(), (640, 360), interpolation=cv2.INTER_AREA)
    plan = plan_input(360, 640, settings.detector_max_side, settings.detector_min_face)
    images = np.zeros((1, plan.height, plan.width, 3), np.uint8)
    preprocess(frame, plan, images[0])
    chips = np.random.default_rng(0).integers(0, 256, (32, 150, 150, 3), dtype=np.uint8)
    cases = [(weights_for(paths, "detector", p, settings), images, 1) for p in ("float32", "int8")]
    cases += [(weights_for(paths, "descriptor", p, settings), chips, 32) for p in ("float32", "int8")]
    timed: dict[str, Case] = {}
    for label, threads, options in ORT_VARIANTS:
        for i, (path, batch, items) in enumerate(cases):
            engine = OnnxRuntimeEngine(path, threads, options, image_input=True)
            timed[f"{label}#{i}"] = (lambda engine=engine, batch=batch: engine.run(batch), items)
    two_at_once = "two single-threaded runs at once (detector: 2 frames, descriptor: 2 x 16 chips)"
    workers = ThreadPoolExecutor(2)
    for i, (path, batch, items) in enumerate(cases):
        engine = OnnxRuntimeEngine(path, 1, image_input=True)
        timed[f"{two_at_once}#{i}"] = (_two_at_once(engine, batch, workers), max(items, 2))
    rates = _measure_all(timed, rounds=5)
    workers.shutdown()
    labels = [label for label, _threads, _options in ORT_VARIANTS] + [two_at_once]
    rows = [(label, [rates[f"{label}#{i}"].median for i in range(len(cases))]) for label in labels]
    opens = []
    for path, _batch, _items in cases:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            OnnxRuntimeEngine(path, settings.threads, image_input=True)
            times.append((time.perf_counter() - started) * 1000)
        opens.append(statistics.median(times))
    rows.append(("opening a session, ms (not a rate; engines are opened once per process and reused)", opens))
    return rows


def run(settings: Settings) -> str:
    """Prepare the models if needed, measure on CPU, and return the ``## Models`` markdown section."""
    model_settings = settings.models.model_copy(update={"engine": "onnxruntime"})
    prepare_models(model_settings)
    models = FaceModels.load(model_settings)
    native = FaceModels.load(model_settings.model_copy(update={"detector_max_side": 1280}))
    int8 = FaceModels.load(model_settings.model_copy(update={"detector_precision": "int8", "descriptor_precision": "int8"}))
    float_ = FaceModels.load(model_settings.model_copy(update={"detector_precision": "float32",
                                                                "descriptor_precision": "float32"}))
    full = FaceModels.load(model_settings.model_copy(update={"detector_precision": "float32",
                                                              "descriptor_precision": "float32",
                                                              "detector_max_side": FULL_ACCURACY_SIDE}))
    single = FaceModels.load(model_settings.model_copy(update={"threads": 1})) if model_settings.threads > 1 else None
    load_before = _load()
    figures = measure(models, native, int8, float_, full, single)
    options = ort_options(model_settings)
    load_after = _load()
    plan = plan_input(360, 640, model_settings.detector_max_side, model_settings.detector_min_face)
    lines = [
        "## Models",
        "",
        f"Command: `{COMMAND}` (ONNX Runtime on CPU, {model_settings.threads} intra-op threads per session). "
        f"Configured: detector {model_settings.detector_precision}, descriptor {model_settings.descriptor_precision} "
        f"(int8: static QDQ, models/quantize.py; its accuracy guards are in tests/unit/test_models_int8.py), "
        f"detection input at most {model_settings.detector_max_side} px (models.detector_max_side), ONNX Runtime "
        f"spin-waiting {'on' if model_settings.spin_wait else 'off'} (models.spin_wait). Every rate below goes "
        "through the plug-ins' code: pre-processing (resize, colour order) and post-processing (map decoding, NMS) "
        "included. Detector frames are the shared clip's (every 5th frame, real faces, a different frame each call; "
        f"resized for 1280x720; the configured precision, auto, runs the int8 builds (at 640x360 the clip-scale one, at 1280x720 the small-face one), so its one-frame rows repeat the int8 rows' code: a check of the noise); \"{CONCURRENT_FRAMES} frames per call\" is how the detector stage calls it when a "
        "batch holds several due frames (CenterFace runs them at once on single-threaded sessions, "
        "models/detectors/centerface.py).",
        (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
         f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after (the machine is shared with other "
         "jobs, so these are lower bounds of what 2 idle cores do). Each figure: a warm-up of "
         f"{WARM_UP_S:.1f} s, then {ROUNDS} timed rounds of {ROUND_S:.1f} s, the rows' rounds interleaved (each round "
         "runs every row in turn, so a busy spell of the shared host slows all rows alike); the rate is the rounds' "
         "median, the range the slowest and fastest round, CPU the process CPU time per item (all threads)."),
        "Targets on 2 cores (issue 12): detector >= 100 frames/s at 640x360, descriptor >= 600 faces/s at batch 32.",
        "",
        "| what | rate (median) | range | CPU-ms per item |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {value.cells()} |" for label, value in figures.items()]
    lines += ["", _verdict(figures, model_settings), "", "### ONNX Runtime session options", "",
              f"The detector on a 640x360 frame (input {plan.width}x{plan.height}, frames/s) and the descriptor at "
              "batch 32 (faces/s), on bare engines (opened as the plug-ins open them, fed prepared inputs: no Python "
              "pre- or post-processing), each option changed alone from the default (median of 5 rounds):", "",
              "| options | detector float | detector int8 | descriptor float | descriptor int8 |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | " + " | ".join(f"{v:,.0f}" for v in values) + " |" for label, values in options]
    return "\n".join(lines) + "\n"


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _verdict(figures: dict[str, Rate], settings: ModelSettings) -> str:
    """The targets against the configured models' rows (the medians; the ranges are beside them)."""
    configured = f"detector {settings.detector_precision}, 640x360 frame (max"
    detector = [(k.split(", ")[-2], v) for k, v in figures.items() if k.startswith(configured) and "threads 1" not in k]
    descriptor = next(v for k, v in figures.items()
                      if k.startswith(f"descriptor {'int8' if settings.descriptor_precision == 'int8' else 'float'}")
                      and "batch 32" in k)
    met = [f"detector ({settings.detector_precision}) {how}: {rate.median:.0f} frames/s "
           f"({rate.low:.0f}-{rate.high:.0f}) {'meets' if rate.median >= 100 else 'misses'} 100" for how, rate in detector]
    met.append(f"descriptor ({settings.descriptor_precision}) batch 32: {descriptor.median:.0f} faces/s "
               f"({descriptor.low:.0f}-{descriptor.high:.0f}) {'meets' if descriptor.median >= 600 else 'misses'} 600")
    return "Against the targets, at the defaults: " + "; ".join(met) + " (on this run's machine and load)."
