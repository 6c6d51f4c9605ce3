"""End-to-end benchmark of the spine on the clip (issue 3): offline throughput through Kafka versus the
bare-inference ceiling without Kafka, and frame-to-event latency of a live camera.

    facestream bench pipeline
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from agents.decoder import FrameSource
from agents.detector import decode_jpeg
from models.faces import FaceModels
from ops.demo import synthesize_clip
from ops.harness import LocalPipeline
from pipeline.settings import Settings
from schemas.messages import CameraChanged

SHARED_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "short_hamilton_clip.mp4"


def clip_and_people(tmp: Path) -> tuple[Path, dict[str, np.ndarray], str]:
    if SHARED_CLIP.exists():
        lin = cv2.imread(str(SHARED_CLIP.parent / "lin-manuel-miranda.png"))
        return SHARED_CLIP, {"Lin Manuel Miranda": lin}, SHARED_CLIP.name
    video = tmp / "astronaut.avi"
    return video, synthesize_clip(video), "synthesised astronaut clip"


def clip_seconds(video: Path) -> float:
    cap = cv2.VideoCapture(str(video))
    fps, count = cap.get(cv2.CAP_PROP_FPS) or 25.0, cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    return float(count / fps)


def ceiling(settings: Settings, video: Path) -> tuple[int, float]:
    """Frames/s of decode + detect + align + quality + describe + attributes in one thread, no Kafka."""
    models = FaceModels.load(settings.models)
    source = FrameSource(str(video), settings.decoder)
    frames = []
    while (f := source.read()) is not None:
        frames.append(f.jpeg)
    source.close()
    started = time.perf_counter()
    for jpeg in frames:
        image = decode_jpeg(jpeg)
        dets = models.detect([image], stream=True)[0]
        chips = [models.align(image, d) for d in dets]
        _ = [models.quality(image, d, c) for d, c in zip(dets, chips, strict=True)]
        if chips:
            models.describe(chips)
            models.attributes(chips)
    return len(frames), time.perf_counter() - started


async def offline(settings: Settings, video: Path, people: dict[str, np.ndarray]) -> tuple[int, float, int]:
    pipeline = LocalPipeline(settings)
    async with pipeline.running():
        await pipeline.enrol(people)
        await pipeline.process(video, "warmup")  # group joins and model loads are not throughput
        result = await pipeline.process(video, "measured")
    return result.frames, result.seconds, len(result.events)


async def live_latency(settings: Settings, video: Path, people: dict[str, np.ndarray]) -> list[float]:
    """The clip played as a camera at the target fps, realtime best-face mode posting the first face at
    once: latency = event seen on the events topic minus the frame's capture time."""
    latencies: list[float] = []
    live = settings.model_copy(update={"detector": settings.detector.model_copy(
        update={"best_face_mode": "realtime", "realtime_post_first": True}),
        "api": settings.api.model_copy(update={"media_root": video.parent})})  # file cameras (URL policy)
    pipeline = LocalPipeline(live, on_event=lambda e: latencies.append(time.time() - e.timestamp))
    async with pipeline.running():
        await pipeline.enrol(people)
        await pipeline.add_camera(CameraChanged(camera_id="bench-live", url=str(video)))
        await asyncio.sleep(clip_seconds(video) * 2 + 8)
    return latencies


def run(settings: Settings) -> str:
    with tempfile.TemporaryDirectory(prefix="facestream-bench-") as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp) / "data"})
        video, people, label = clip_and_people(Path(tmp))
        n_ceiling, t_ceiling = ceiling(settings, video)
        n_e2e, t_e2e, n_events = asyncio.run(offline(settings, video, people))
        latencies = asyncio.run(live_latency(settings, video, people))
    fps_ceiling, fps_e2e = n_ceiling / t_ceiling, n_e2e / t_e2e
    duration = clip_seconds(video)
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = float(np.percentile(latencies, 95)) if latencies else float("nan")
    return "\n".join([
        "## Pipeline end to end (issue 3)",
        "",
        "Command: `facestream bench pipeline` (part of `make bench`). "
        f"Clip: {label}, {duration:.1f} s, sampled at {settings.decoder.target_fps:g} fps "
        f"({n_e2e} frames); {os.cpu_count()} CPU cores; ONNX Runtime on CPU.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| end to end through Kafka, offline (frames/s) | {fps_e2e:.1f} |",
        f"| ceiling: bare decode+detect+describe, no Kafka (frames/s) | {fps_ceiling:.1f} |",
        f"| ratio end-to-end / ceiling | {fps_e2e / fps_ceiling:.2f} |",
        f"| clip processed in (s) / real time factor | {t_e2e:.2f} / {duration / t_e2e:.1f}x |",
        f"| events from the measured run | {n_events} |",
        f"| live camera, frame-to-event latency p50 / p95 (s, realtime mode, n={len(latencies)}) | {p50:.3f} / {p95:.3f} |",
        "",
    ])
