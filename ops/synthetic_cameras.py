"""Synthetic live cameras for the benchmarks (``bench cameras``, ``bench profile``): the clip scaled to a
camera's resolution and resampled to its frame rate, and the settings such a camera runs under."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from ops.bench_peer import CLIP
from pipeline.settings import Settings

MAX_CAMERAS = 8


@dataclass(frozen=True)
class Scenario:
    label: str
    width: int
    height: int
    fps: float
    min_face: int  # models.detector_min_face: the smallest face detection must find, source pixels
    search: bool = True  # grow N until a run fails (else: one camera, for its cost only)
    detect_interval_s: float | None = None  # None: the setting's (default 0.1)
    detector_precision: str | None = None  # None: the setting's (default auto: the int8 builds)


SCENARIOS = (Scenario("1080p @ 8 fps, faces from 40 px", 1920, 1080, 8.0, 40),
             Scenario("1080p @ 8 fps, faces from 40 px, float detector (not the default)",
                      1920, 1080, 8.0, 40, detector_precision="float32"),
             Scenario("720p @ 25 fps", 1280, 720, 25.0, 32),
             Scenario("640x360 @ 8 fps (cost of one camera)", 640, 360, 8.0, 32, search=False))


def matching(text: str | None) -> tuple[Scenario, ...]:
    """The scenario labelled ``text``, else those whose label contains it (all for None)."""
    if text is None:
        return SCENARIOS
    return tuple(s for s in SCENARIOS if s.label == text) or tuple(s for s in SCENARIOS if text in s.label)


def synthetic_source(scenario: Scenario, folder: Path) -> Path:
    """The clip scaled to the scenario's size and resampled to its frame rate."""
    path = folder / f"camera-{scenario.width}x{scenario.height}-{scenario.fps:g}.mp4"
    if path.is_file():
        return path
    cap = cv2.VideoCapture(str(CLIP))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 29.97
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), scenario.fps,
                             (scenario.width, scenario.height))
    index, next_keep = 0, 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index + 1e-6 >= next_keep:
            writer.write(cv2.resize(frame, (scenario.width, scenario.height), interpolation=cv2.INTER_LINEAR))
            next_keep += src_fps / scenario.fps
        index += 1
    cap.release()
    writer.release()
    return path


def scenario_settings(settings: Settings, scenario: Scenario, data_dir: Path, source: Path) -> Settings:
    """The settings a scenario's cameras run under, with ``source`` (their file) allowed as a camera (URL
    policy: local camera files only under ``api.media_root``)."""
    detector = {} if scenario.detect_interval_s is None else {"detect_interval_s": scenario.detect_interval_s}
    models: dict[str, object] = {"detector_min_face": scenario.min_face}
    if scenario.detector_precision is not None:
        models["detector_precision"] = scenario.detector_precision
    return settings.model_copy(update={
        "data_dir": data_dir,
        "decoder": settings.decoder.model_copy(update={"target_fps": scenario.fps}),
        "detector": settings.detector.model_copy(update=detector),
        "models": settings.models.model_copy(update=models),
        "kafka": settings.kafka.model_copy(update={"partitions": max(settings.kafka.partitions, MAX_CAMERAS)}),
        "api": settings.api.model_copy(update={"media_root": source.parent}),
    })
