"""Scaling benchmark (issue 6): the clip on 4 camera ids at once, with 1 versus 2 detector processes in the
detector consumer group (decoder, extractor and matcher run in one other process).

    facestream bench scaling
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

from ops.bench_pipeline import clip_and_people
from ops.broker import EmbeddedBroker
from ops.harness import LocalPipeline
from pipeline.kafka import group_id, replay_topic
from pipeline.settings import Settings
from schemas.messages import MemberReport
from schemas.topics import STAGE_MEMBERS

CAMERAS = 4


def spread_camera_ids(partitions: int, count: int) -> list[str]:
    """Camera ids that librdkafka's default (CRC32) partitioner puts on distinct partitions."""
    chosen: dict[int, str] = {}
    for i in range(1000):
        cid = f"cam-{i}"
        chosen.setdefault(zlib.crc32(cid.encode()) % partitions, cid)
        if len(chosen) == count:
            break
    return list(chosen.values())


def start_detector(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FACESTREAM_BOOTSTRAP_SERVERS": str(settings.bootstrap_servers),
           "FACESTREAM_DATA_DIR": str(settings.data_dir), "FACESTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
           "FACESTREAM_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
           "FACESTREAM_MODELS_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ops.cli", "run", "detector"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def wait_for_members(settings: Settings, role: str, count: int, timeout_s: float = 90) -> None:
    """Until ``count`` workers of ``role`` report partitions on stage-members and cover every partition
    (the embedded broker does not describe group members)."""
    latest: dict[str, MemberReport] = {}
    ready, stop = asyncio.Event(), asyncio.Event()

    def on_report(report: MemberReport) -> None:
        if report.group == group_id(settings, role):
            latest[report.client_id] = report
            owners = [r for r in latest.values() if r.partitions]
            if len(owners) >= count and len({p for r in owners for p in r.partitions}) >= settings.kafka.partitions:
                ready.set()

    reader = asyncio.create_task(replay_topic(settings, STAGE_MEMBERS, on_report, stop))
    try:
        await asyncio.wait_for(ready.wait(), timeout_s)
    finally:
        stop.set()
        await reader


async def one_run(base: Settings, detectors: int, video: Path, people: dict, tmp: Path) -> tuple[float, int]:
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={
        "topic_prefix": f"s{uuid.uuid4().hex[:6]}.", "partitions": CAMERAS, "session_timeout_ms": 3000})})
    pipeline = LocalPipeline(settings)
    async with pipeline.running(roles=("decoder", "extractor", "matcher")):
        procs = [start_detector(pipeline.settings, tmp / f"detector-{detectors}-{i}.log") for i in range(detectors)]
        try:
            await pipeline.enrol(people)
            await wait_for_members(pipeline.settings, "detector", detectors)
            started = time.perf_counter()
            results = await asyncio.gather(*[
                pipeline.process_as(video, f"job-{cid}", cid) for cid in spread_camera_ids(CAMERAS, CAMERAS)])
            elapsed = time.perf_counter() - started
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    return elapsed, sum(r.frames for r in results)


def run(settings: Settings) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="facestream-scaling-") as tmp_name:
        tmp = Path(tmp_name)
        video, people, label = clip_and_people(tmp)
        with EmbeddedBroker() as broker:
            base = settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers, "data_dir": tmp / "data"})
            for detectors in (1, 2):
                elapsed, frames = asyncio.run(one_run(base, detectors, video, people, tmp))
                rows.append(f"| {detectors} | {frames} | {elapsed:.2f} | {frames / elapsed:.1f} |")
    return "\n".join([
        "## Scaling: 4 cameras, 1 vs 2 detector processes (issue 6)",
        "",
        f"Command: `facestream bench scaling` (part of `make bench`). Clip: {label} submitted as 4 video jobs on 4 "
        f"camera ids that land on 4 different partitions; detectors run as separate processes (`facestream run "
        f"detector`, 1 ONNX Runtime thread each) in one consumer group; decoder, extractor and matcher share one "
        f"other process. {os.cpu_count()} CPU cores in all, so the second detector competes with the rest for them.",
        "",
        "| detector processes | frames | seconds | frames/s |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
