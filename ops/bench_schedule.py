"""``facestream bench schedule``: detection every k-th frame (``detector.detect_interval_s``) against every
frame, on every frame of the clip end to end through Kafka: wall frames/s, CPU per frame, the events and who
they name (the clip's true cast: Lin-Manuel Miranda, Alex Lacamoire, Barack Obama; Joe Biden, enrolled too,
is not in it)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from ops.bench_profile import CLIP, KafkaRun, load_note, through_kafka
from pipeline.settings import Settings

COMMAND = "facestream bench schedule"
INTERVALS = (0.0, 0.1, 0.2)
CAST_IN_CLIP = {"Lin-Manuel Miranda", "Alex Lacamoire", "Barack Obama"}


def _row(interval: float, run: KafkaRun, default: float) -> str:
    people = sorted({e.dossier_name for e in run.events if e.matched and e.dossier_name})
    missing = sorted(CAST_IN_CLIP - set(people))
    wrong = sorted(set(people) - CAST_IN_CLIP)
    label = "every frame" if interval == 0 else f"{interval:g} s (one frame in {max(1, round(interval * 29.97))})"
    verdict = "cast found, nobody else" if not missing and not wrong else (
        f"missing {', '.join(missing) or '-'}; wrongly matched {', '.join(wrong) or '-'}")
    return (f"| {label}{' (default)' if interval == default else ''} | {run.frames / run.wall:.1f} "
            f"| {run.cpu / run.frames * 1000:.1f} | {run.broker_cpu / run.frames * 1000:.1f} | {len(run.events)} "
            f"| {', '.join(people) or 'none'} | {verdict} |")


def run(settings: Settings) -> str:
    heading = "## Detection scheduling: every k-th frame (issue 12)"
    if not CLIP.is_file():
        return f"{heading}\n\nSkipped: {CLIP} not found.\n"
    default = settings.detector.detect_interval_s
    rows = []
    with tempfile.TemporaryDirectory(prefix="facestream-schedule-") as tmp:
        for i, interval in enumerate(INTERVALS):
            live = settings.model_copy(update={
                "data_dir": Path(tmp) / f"data{i}",
                "decoder": settings.decoder.model_copy(update={"target_fps": 30.0}),
                "detector": settings.detector.model_copy(update={"detect_interval_s": interval})})
            rows.append(_row(interval, asyncio.run(through_kafka(live)), default))
    return "\n".join([
        heading,
        "",
        f"Command: `{COMMAND}` (ops/bench_schedule.py). Clip: short_hamilton_clip.mp4, all 275 frames "
        "(29.97 fps) end to end through Kafka (the spine in one process, the embedded broker beside it), after a "
        f"warm-up run; {load_note()}. On frames not detected "
        "the tracker predicts the faces' boxes (constant velocity) and the next detection re-anchors them; cuts "
        "are always detected. CPU-ms per frame from process times.",
        "",
        "| detect_interval_s | frames/s (wall) | CPU-ms per frame | broker CPU-ms per frame | events "
        "| known people matched | accuracy |",
        "|---|---:|---:|---:|---:|---|---|",
        *rows,
        "",
    ])
