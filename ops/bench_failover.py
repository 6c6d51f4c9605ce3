"""Detector failover, repeated (issue 16, point 3): is the replay after a SIGKILL exact, kill after kill?

    facestream bench failover            # 10 kills, ~4 min on 2 cores

The clip runs on the embedded broker with two detector processes (``facestream run detector``) in one consumer
group; decoder, extractor and matcher share this process. One undisturbed run gives the reference events. Then
each round submits the clip under a new camera id and SIGKILLs the detector that owns that camera's frames
partition (``ops.harness.DetectorWatch``) once that detector has handled a growing share of the clip's frames
(round i of n at (i-1)/n of them, read from the detector's own metrics); the survivor takes the partition over, a fresh detector
process replaces the victim at once (its join moves partitions again), and the round ends at the clip's
StreamEnd. Each round's events are compared with the reference by (track id, sequence, matched name): a
*duplicate* is an event the reference does not have (a face posted again under another id, or matched
otherwise), a *loss* is a reference event that never came; a *redelivery* is the same event delivered again
(at-least-once: stores upsert it, consumers drop it) and is counted apart.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ops.bench_pipeline import clip_and_people
from ops.broker import EmbeddedBroker, free_port
from ops.harness import DetectorWatch, LocalPipeline
from pipeline.settings import Settings
from schemas.messages import FaceEvent

KILLS = 10


@dataclass
class Round:
    camera_id: str
    frames_at_kill: int  # frames of the clip the victim had handled (-1: the clip ended first, no kill)
    faces_at_kill: int
    events: int
    duplicates: int
    losses: int
    redelivered: int
    seconds: float


Key = tuple[str, str, str | None]


def key_of(event: FaceEvent) -> Key:
    """An event without its camera and session (each round has its own): track id, sequence, matched name."""
    _, track, seq = event.event_id.rsplit(":", 2)
    return track, seq, event.dossier_name if event.matched else None


def compare(expected: set[Key], events: list[FaceEvent]) -> tuple[int, int, int]:
    """(duplicates, losses, redeliveries) of ``events`` against the reference's."""
    counts = Counter(key_of(e) for e in events)
    return len(set(counts) - expected), len(expected - set(counts)), sum(n - 1 for n in counts.values())


class Detectors:
    """The detector processes (``facestream run detector``, each serving its metrics on a port of its own):
    started, killed, replaced, and how many frames each has consumed."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs = settings, logs
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.ports: dict[int, int] = {}
        self.started = 0

    def start(self) -> None:
        self.started += 1
        port = free_port()
        env = {**os.environ, "FACESTREAM_BOOTSTRAP_SERVERS": str(self.settings.bootstrap_servers),
               "FACESTREAM_DATA_DIR": str(self.settings.data_dir),
               "FACESTREAM_KAFKA_TOPIC_PREFIX": self.settings.kafka.topic_prefix,
               "FACESTREAM_KAFKA_PARTITIONS": str(self.settings.kafka.partitions),
               "FACESTREAM_KAFKA_SESSION_TIMEOUT_MS": str(self.settings.kafka.session_timeout_ms),
               "FACESTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": str(self.settings.kafka.heartbeat_interval_ms),
               "FACESTREAM_MODELS_THREADS": "1", "FACESTREAM_METRICS_PORT": str(port)}
        with open(self.logs / f"detector-{self.started}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "run", "detector"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs[proc.pid], self.ports[proc.pid] = proc, port

    def kill(self, pid: int) -> None:
        proc = self.procs.pop(pid)
        self.ports.pop(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    async def consumed(self, pid: int) -> int:
        """Frames (and stream ends) the detector ``pid`` has handled since it started, from its metrics."""
        url = f"http://127.0.0.1:{self.ports[pid]}/metrics"

        def read() -> int:
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            found = re.search(r'^facestream_messages_in_total\{stage="detector"\} (\S+)$', text, re.MULTILINE)
            return int(float(found.group(1))) if found else 0

        return await asyncio.to_thread(read)

    async def settled(self, watch: DetectorWatch, timeout_s: float = 120) -> None:
        """Until every live detector reports one frames partition of its own (the group has rebalanced)."""
        deadline = time.monotonic() + timeout_s
        while True:
            owned = watch.detectors()
            parts = [owned.get(pid, set()) for pid in self.procs]
            if all(len(p) == 1 for p in parts) and len(set().union(*parts)) == len(parts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"detectors did not settle: {owned}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(30)


async def one_round(pipeline: LocalPipeline, detectors: Detectors, watch: DetectorWatch, video: Path,
                    expected: set[Key], kill_at: int) -> Round:
    """The clip on a new camera; its detector killed once it has handled ``kill_at`` of the clip's frames."""
    camera = f"video:failover-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    before = {pid: await detectors.consumed(pid) for pid in detectors.procs}
    job = asyncio.create_task(pipeline.process_as(video, camera.split(":", 1)[1], camera, timeout_s=300))
    victim, handled = None, -1
    while not job.done():  # until the camera's owner is known and has handled kill_at frames of it
        victim = watch.owner(camera)
        if victim is not None and (handled := await detectors.consumed(victim) - before[victim]) >= kill_at:
            break
        await asyncio.sleep(0.02)
    faces_at_kill = len(set(watch.faces.get(camera, ())))
    killed = victim is not None and not job.done()
    if killed:
        assert victim is not None
        detectors.kill(victim)
        detectors.start()  # a supervisor's restart: its join moves partitions again, mid-clip after an early kill
    result = await job
    await detectors.settled(watch)  # both up and sharing the partitions before the next round
    duplicates, losses, redelivered = compare(expected, result.events)
    return Round(camera, handled if killed else -1, faces_at_kill, len(result.events), duplicates, losses,
                 redelivered, time.perf_counter() - started)


async def measure(base: Settings, video: Path, people: dict, tmp: Path) -> tuple[int, int, list[Round]]:
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={
        "topic_prefix": f"f{uuid.uuid4().hex[:6]}.", "partitions": 2, "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 500})})
    pipeline = LocalPipeline(settings)
    async with pipeline.running(roles=("decoder", "extractor", "matcher")):
        detectors = Detectors(pipeline.settings, tmp)
        watch, stop = DetectorWatch(pipeline.settings), asyncio.Event()
        reader = asyncio.create_task(watch.run(stop))
        try:
            detectors.start()
            detectors.start()
            await pipeline.enrol(people)
            await detectors.settled(watch)
            reference = await pipeline.process_as(video, "failover-reference", "video:failover-reference", 300)
            expected = {key_of(e) for e in reference.events}
            rounds = []
            for i in range(KILLS):  # kill points spread over the clip, from its first frame to near its end
                kill_at = reference.frames * i // KILLS
                rounds.append(await one_round(pipeline, detectors, watch, video, expected, kill_at))
                print(f"round {i + 1}: {rounds[-1]}", flush=True)
        finally:
            stop.set()
            await reader
            detectors.stop()
    return len(expected), reference.frames, rounds


def cast_portraits(video: Path) -> dict[str, np.ndarray]:
    """The clip's other cast members beside Lin-Manuel Miranda, where the shared portraits are there."""
    folder = video.parent
    files = {"Alex Lacamoire": "alex-lacamoire.png", "Obama": "obama.jpg", "Biden": "biden.jpg"}
    images = {name: cv2.imread(str(folder / f)) for name, f in files.items() if (folder / f).is_file()}
    return {name: np.asarray(image) for name, image in images.items() if image is not None}


def run(settings: Settings) -> str:
    with tempfile.TemporaryDirectory(prefix="facestream-failover-") as tmp_name:
        tmp = Path(tmp_name)
        video, people, label = clip_and_people(tmp)
        people.update(cast_portraits(video))
        with EmbeddedBroker() as broker:
            base = settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers,
                                               "data_dir": tmp / "data"})
            reference, frames, rounds = asyncio.run(measure(base, video, people, tmp))
    rows = [f"| {i + 1} | {r.frames_at_kill if r.frames_at_kill >= 0 else 'no kill (clip over)'} | "
            f"{r.faces_at_kill} | {r.events} | "
            f"{r.duplicates} | {r.losses} | {r.redelivered} | {r.seconds:.1f} |" for i, r in enumerate(rounds)]
    kills = sum(r.frames_at_kill >= 0 for r in rounds)
    return "\n".join([
        "## Detector failover, repeated kills (issue 16)",
        "",
        f"Command: `facestream bench failover` (not part of `make bench`; ~{sum(r.seconds for r in rounds) / 60:.0f} "
        f"min). Clip: {label}; two detector processes (`facestream run detector`, 1 ONNX Runtime thread each) in one "
        "consumer group on the embedded broker, decoder, extractor and matcher in the bench's process. Each round "
        f"submits the clip on a new camera id and SIGKILLs the detector owning its frames partition once it has "
        f"handled (round - 1)/10 of the clip's {frames} sampled frames (read from its own metrics, so in steps of a "
        f"consumer batch; round 1 at its first frame); a fresh detector replaces it at once (its join moves the "
        "partitions again, mid-clip after an early kill). Compared with an undisturbed "
        f"run ({reference} events) by (track id, sequence, matched name): duplicate = an event the undisturbed run "
        "lacks, loss = one of its events missing, redelivered = the same event again (at-least-once; upserted). "
        f"{os.cpu_count()} CPU cores.",
        "",
        "| round | frames handled by the victim | faces posted by then | events | duplicates | losses | redelivered "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Total over {kills} kills: {sum(r.duplicates for r in rounds)} duplicates, "
        f"{sum(r.losses for r in rounds)} losses, {sum(r.redelivered for r in rounds)} redeliveries.",
        "",
    ])
