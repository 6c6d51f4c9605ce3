"""``facestream bench cameras``: how many live cameras one process keeps up with on this machine, and what a
camera-hour costs in CPU.

Synthetic cameras: the clip, scaled to the camera's resolution and written at the camera's frame rate
(``mp4v``), played as a live camera (a file camera plays at ``decoder.target_fps`` on absolute deadlines and
at its end reopens at once, a new stream session per pass). N such cameras run at once through the spine in one
process (``LocalPipeline``, the embedded broker beside it); after a warm-up, for the measured window, a camera
**keeps up** when the detector took at least 95 % of the frames its rate asks for (it skips frames older than
``detector.live_max_age_s``, counted as ``detector_behind``; frames the decoder failed to publish count
against it too). N grows until a run fails to keep up. ``--scenario TEXT`` runs only the scenario labelled
TEXT, else those whose label contains it (printed, not written). CPU-seconds per camera-hour = (this
process + the broker) CPU over the window, per camera, scaled to an hour.

Scenarios: 1080p at 8 frames/s finding faces from 40 px (``models.detector_min_face`` 40: the detector's input
is then 768x432) and 720p at 25 frames/s, each with the default detection schedule (``detect_interval_s``
0.1: 8 fps is detected on every frame, 25 fps one frame in three); and one 640x360 camera at 8 frames/s for
its cost alone. A second 1080p row shows the non-default way to more cameras: the int8 detector (same
detections on the shared photos, but it moves faces near the threshold on the clip) and detection one frame
in two (0.25 s).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY

from ops.bench_profile import CLIP, _broker_cpu, _cpu, load_note
from ops.harness import LocalPipeline
from ops.synthetic_cameras import MAX_CAMERAS, SCENARIOS, matching, scenario_settings, synthetic_source
from pipeline.settings import Settings
from schemas.messages import CameraChanged

COMMAND = "facestream bench cameras"
WARM_UP_S = 6.0
WINDOW_S = 15.0
KEEP_UP = 0.95


@dataclass(frozen=True)
class Trial:
    cameras: int
    decoded: float  # frames published per camera per second (mean)
    taken: float  # frames the detector took (not skipped) per camera per second (mean)
    detected: float  # of those, frames it ran detection on (the rest tracked by the motion model)
    worst: float  # the worst camera's taken / asked
    cpu: float  # CPU-seconds per second of the window, this process + broker

    @property
    def keeps_up(self) -> bool:
        return self.worst >= KEEP_UP


def _counters() -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per camera: frames decoded, frames the detector skipped (``detector_behind``), and frames it tracked
    without running detection (the schedule and the live stretch), so far."""
    decoded: dict[str, float] = {}
    behind: dict[str, float] = {}
    predicted: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            camera = sample.labels.get("camera", "")
            if metric.name == "facestream_frames_decoded":
                decoded[camera] = sample.value
            elif metric.name == "facestream_frames_dropped" and sample.labels.get("reason") == "detector_behind":
                behind[camera] = behind.get(camera, 0.0) + sample.value
            elif metric.name == "facestream_frames_predicted":
                predicted[camera] = sample.value
    return decoded, behind, predicted


async def trial(settings: Settings, source: Path, cameras: int, fps: float) -> Trial:
    """``cameras`` live cameras on ``source`` at once; the measured window's figures."""
    ids = [f"bench-cam-{cameras}-{i}" for i in range(cameras)]
    pipeline = LocalPipeline(settings)
    async with pipeline.running():
        for camera_id in ids:
            await pipeline.add_camera(CameraChanged(camera_id=camera_id, url=str(source)))
        await asyncio.sleep(WARM_UP_S)
        decoded0, behind0, predicted0 = _counters()
        cpu0, broker0, started = _cpu(), _broker_cpu(), time.monotonic()
        await asyncio.sleep(WINDOW_S)
        decoded1, behind1, predicted1 = _counters()
        cpu = _cpu() - cpu0 + _broker_cpu() - broker0
        window = time.monotonic() - started
    per_camera = []
    for camera_id in ids:
        published = decoded1.get(camera_id, 0.0) - decoded0.get(camera_id, 0.0)
        skipped = behind1.get(camera_id, 0.0) - behind0.get(camera_id, 0.0)
        tracked = predicted1.get(camera_id, 0.0) - predicted0.get(camera_id, 0.0)
        per_camera.append((published / window, (published - skipped) / window,
                           (published - skipped - tracked) / window))
    worst = min(taken / fps for _, taken, _ in per_camera)
    return Trial(cameras, sum(p for p, _, _ in per_camera) / cameras, sum(t for _, t, _ in per_camera) / cameras,
                 sum(d for _, _, d in per_camera) / cameras, worst, cpu / window)


IDLE_FETCH_WAITS_MS = (20, 100)  # kafka.fetch_max_wait_ms: the default, and a longer poll


async def idle(settings: Settings) -> tuple[float, float]:
    """CPU-seconds per second of the spine running with no camera: this process, the broker."""
    pipeline = LocalPipeline(settings)
    async with pipeline.running():
        await asyncio.sleep(WARM_UP_S)
        cpu0, broker0, started = _cpu(), _broker_cpu(), time.monotonic()
        await asyncio.sleep(WINDOW_S / 2)
        window = time.monotonic() - started
        return (_cpu() - cpu0) / window, (_broker_cpu() - broker0) / window


def run(settings: Settings, scenario: str | None = None) -> str:
    """The section; with ``scenario``, only the scenarios whose label contains it (and no idle rows)."""
    heading = "## Live cameras per 2 cores and CPU per camera-hour (issue 12)"
    if not CLIP.is_file():
        return f"{heading}\n\nSkipped: {CLIP} not found.\n"
    rows = []
    summary = []
    chosen = matching(scenario)
    with tempfile.TemporaryDirectory(prefix="facestream-cameras-") as tmp:
        idle_rows = []
        for wait in IDLE_FETCH_WAITS_MS if scenario is None else ():
            quiet = settings.model_copy(update={"data_dir": Path(tmp) / f"idle-{wait}",
                                                "kafka": settings.kafka.model_copy(update={"fetch_max_wait_ms": wait})})
            process, broker = asyncio.run(idle(quiet))
            idle_rows.append(f"| {wait}{' (default)' if wait == settings.kafka.fetch_max_wait_ms else ''} "
                             f"| {process:.2f} | {broker:.2f} |")
        for s_index, case in enumerate(SCENARIOS):
            if case not in chosen:
                continue
            source = synthetic_source(case, Path(tmp))
            best: Trial | None = None
            for n in range(1, (MAX_CAMERAS if case.search else 1) + 1):
                live = scenario_settings(settings, case, Path(tmp) / f"data-{s_index}-{n}", source)
                result = asyncio.run(trial(live, source, n, case.fps))
                ok = result.keeps_up
                rows.append(f"| {case.label} | {n} | {result.decoded:.1f} | {result.taken:.1f} "
                            f"| {result.detected:.1f} "
                            f"| {result.worst * 100:.1f} % | {'yes' if ok else 'no'} | {result.cpu:.2f} "
                            f"| {result.cpu / n * 3600:,.0f} |")
                if not ok:
                    break
                best = result
            if best is None:
                summary.append(f"- {case.label}: not even one camera kept up on this run.")
            else:
                summary.append(f"- {case.label}: **{best.cameras} camera(s)** kept up; "
                               f"**{best.cpu / best.cameras * 3600:,.0f} CPU-seconds per camera-hour** at that load "
                               f"({best.cpu / best.cameras * 100:.0f} % of one core per camera).")
    return "\n".join([
        heading,
        "",
        f"Command: `{COMMAND}` (ops/bench_cameras.py). Synthetic live cameras: the clip scaled and resampled to "
        f"each camera's size and rate, played as file cameras (looping); N cameras at once through the spine in "
        f"one process, {WARM_UP_S:g} s warm-up, {WINDOW_S:g} s measured; a camera keeps up when the detector took "
        f">= {KEEP_UP * 100:.0f} % of the frames its rate asks for. {load_note()}. CPU is this process plus the "
        "embedded broker.",
        "",
        "| cameras | N | frames published /s per camera | frames detected or tracked /s per camera "
        "| of those detected /s | worst camera | keeps up | CPU-s per s (all cameras) | CPU-s per camera-hour |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        *rows,
        "",
        *summary,
        "",
        "The spine with no camera at all (CPU-s per s; its consumers long-poll the broker every "
        "`kafka.fetch_max_wait_ms`, which every hop's latency pays when idle):",
        "",
        "| kafka.fetch_max_wait_ms | this process | broker |",
        "|---:|---:|---:|",
        *idle_rows,
        "",
    ])
