"""Frame-to-event latency of live cameras (issue 10): the clip played as a live camera at
``decoder.target_fps`` (8 fps) in realtime best-face mode posting a track's first face at once; one camera,
then four at once. Latency = the event seen on the events topic (a plain consumer, like any integrator's)
minus its frame's capture time (the decoder's grab time).

    facestream bench latency [--duration SECONDS]    # measured time per row (default 60 s)

"First face" rows are the posts realtime mode makes the moment a track starts (the alarm case); "all
events" adds the interval posts, whose best face of the interval may be up to ``realtime_interval_s`` old
by design. Per-hop input age (the ``facestream_input_age_seconds`` histogram: now minus the produce time
of the record a stage takes) shows where the time goes.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY

from ops.bench_pipeline import clip_and_people
from ops.harness import LocalPipeline
from pipeline.settings import Settings
from schemas.messages import CameraChanged, FaceEvent

STAGES = ("detector", "extractor", "matcher")


def _seq(event: FaceEvent) -> int:
    return int(event.event_id.rsplit(":", 1)[1])


def _input_age() -> dict[str, tuple[float, float]]:
    """stage -> (sum, count) of the input-age histogram so far (this process)."""
    out: dict[str, tuple[float, float]] = {}
    for metric in REGISTRY.collect():
        if metric.name != "facestream_input_age_seconds":
            continue
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for sample in metric.samples:
            stage = sample.labels.get("stage", "")
            if sample.name.endswith("_sum"):
                sums[stage] = sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = sample.value
        out = {s: (sums.get(s, 0.0), counts.get(s, 0.0)) for s in counts}
    return out


def _dropped() -> float:
    """Frames skipped so far by detectors in this process (``detector_behind``)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "facestream_frames_dropped":
            total += sum(s.value for s in metric.samples
                         if s.name.endswith("_total") and s.labels.get("reason") == "detector_behind")
    return total


async def measure(settings: Settings, video: Path, people: dict[str, np.ndarray], cameras: int,
                  seconds: float) -> tuple[list[float], list[float], dict[str, float]]:
    """(first-face latencies, all latencies, mean input age per stage in s) of ``cameras`` live cameras."""
    first: list[float] = []
    every: list[float] = []
    warm = [False]

    def seen(event: FaceEvent) -> None:
        if not warm[0] or not event.camera_id.startswith("bench-live"):
            return
        latency = time.time() - event.timestamp
        every.append(latency)
        if _seq(event) == 0:
            first.append(latency)

    live = settings.model_copy(update={"detector": settings.detector.model_copy(
        update={"best_face_mode": "realtime", "realtime_post_first": True}),
        "api": settings.api.model_copy(update={"media_root": video.parent})})  # file cameras (URL policy)
    pipeline = LocalPipeline(live, on_event=seen)
    async with pipeline.running():
        await pipeline.enrol(people)
        for n in range(cameras):
            await pipeline.add_camera(CameraChanged(camera_id=f"bench-live-{n}", url=str(video)))
        await asyncio.sleep(8)  # group joins, model warm-up, first frames
        warm[0] = True
        before = _input_age()
        await asyncio.sleep(seconds)
        after = _input_age()
    ages = {}
    for stage in STAGES:
        s1, c1 = after.get(stage, (0.0, 0.0))
        s0, c0 = before.get(stage, (0.0, 0.0))
        ages[stage] = (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")
    return first, every, ages


def _pct(values: list[float]) -> str:
    if not values:
        return "n/a | n/a | n/a"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"{p50 * 1000:.0f} | {p95 * 1000:.0f} | {p99 * 1000:.0f}"


def run(settings: Settings, duration: float | None = None) -> str:
    seconds = duration or 60.0
    rows = []
    with tempfile.TemporaryDirectory(prefix="facestream-bench-") as tmp:
        video, people, label = clip_and_people(Path(tmp))
        for cameras in (1, 4):
            data = settings.model_copy(update={"data_dir": Path(tmp) / f"data{cameras}"})
            before = _dropped()
            first, every, ages = asyncio.run(measure(data, video, people, cameras, seconds))
            dropped = _dropped() - before
            hops = ", ".join(f"{s} {ages[s] * 1000:.0f}" for s in STAGES)
            rows.append(f"| {cameras} | first face (n={len(first)}) | {_pct(first)} | {hops} |")
            rows.append(f"| {cameras} | all events (n={len(every)}) | {_pct(every)} | |")
            rows.append(f"| {cameras} | frames skipped by the detector as stale | {dropped} | | | |")
    k, d = settings.kafka, settings.decoder
    return "\n".join([
        "## Live camera latency (issue 10)",
        "",
        f"Command: `facestream bench latency --duration {seconds:g}` (part of `make bench`; the duration is "
        f"the measured time per row, after an 8 s warm-up). Clip: {label}, looping as a live "
        f"camera at {d.target_fps:g} fps, realtime mode posting a track's first face at once; "
        f"{os.cpu_count()} CPU cores, ONNX Runtime on CPU, everything in one process on the embedded broker; "
        f"fetch wait {k.fetch_max_wait_ms} ms, linger {k.linger_ms} ms, max batch {k.max_batch}.",
        "",
        "| cameras | events | p50 (ms) | p95 (ms) | p99 (ms) | mean input age per hop (ms) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])
