"""``facestream bench NAME``: run a benchmark, print its markdown section, and record it in BENCHMARKS.md."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from pipeline.settings import Settings

BENCHES = {
    "models": "ops.bench_models:run",
    "pipeline": "ops.bench_pipeline:run",
    "matching": "ops.bench_matching:run",
    "kafka": "ops.bench_kafka:run",
    "scaling": "ops.bench_scaling:run",
    "smallfaces": "ops.bench_smallfaces:run",
    "calibration": "ops.bench_calibration:run",
    "peer": "ops.bench_peer:run",
    "profile": "ops.bench_profile:run",
    "schedule": "ops.bench_schedule:run",
    "cameras": "ops.bench_cameras:run",
    "attributes": "ops.bench_attributes:run",
    "latency": "ops.bench_latency:run",
    "soak": "ops.bench_soak:run",
    "failover": "ops.bench_failover:run",
}
NOT_IN_ALL = {"soak", "failover"}  # minutes long: run them by name
BENCHMARKS_MD = Path("BENCHMARKS.md")


def run_bench(settings: Settings, name: str, write: bool = True, duration: float | None = None,
              scenario: str | None = None) -> int:
    """Run one benchmark (or ``all`` but the soak); ``duration`` (seconds) overrides the measured time of
    the benchmarks that have one (latency, soak); ``scenario`` picks the scenarios of those that have them
    (cameras: the labels containing it)."""
    names = [b for b in BENCHES if b not in NOT_IN_ALL] if name == "all" else [name]
    for bench in names:
        module, func = BENCHES[bench].split(":")  # imported on demand: each bench pulls in what it measures
        target = getattr(importlib.import_module(module), func)
        parameters = inspect.signature(target).parameters
        options: dict[str, object] = {}
        if duration is not None and "duration" in parameters:
            options["duration"] = duration
        if scenario is not None and "scenario" in parameters:
            options["scenario"] = scenario
        section = target(settings, **options)
        print(section)
        if write:
            record(section)
    return 0


def record(section: str) -> None:
    """Replace the section with the same '## ' heading in BENCHMARKS.md, or append it."""
    heading = section.strip().splitlines()[0]
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.strip() + "\n\n", text)
    else:
        text = text.rstrip() + "\n\n" + section.strip() + "\n"
    BENCHMARKS_MD.write_text(text)
