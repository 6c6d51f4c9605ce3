"""Soak (issue 10): four file cameras looping as live sources (a file camera reopens at its end exactly like
an RTSP reconnect) through the spine run as separate ``facestream run ROLE`` processes on the embedded
broker, with one decoder restart (SIGTERM, then a new one) and one detector SIGKILL (then a new one) in the
middle. Not a test: minutes long.

    facestream bench soak [--duration SECONDS]     # default 600

Reports events per pass (one pass = one stream session of a camera), duplicate ids (two different events
under one id; a redelivery of the same event after the SIGKILL is not a duplicate, it is counted apart),
frames decoded vs detected with the drops by reason (decoders' and detectors'), and RSS and open file descriptors of every
role process after warm-up and at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from ops.bench_pipeline import clip_and_people, clip_seconds
from ops.broker import EmbeddedBroker
from ops.harness import gallery_changes
from pipeline.kafka import AsyncProducer, provision_topics, replay_topic
from pipeline.settings import Settings
from schemas.messages import CameraChanged, CameraStatus, FaceEvent
from schemas.topics import CAMERA_STATUS, CAMERAS, CORE_TOPICS, EVENTS, GALLERY

ROLES = ("decoder", "detector", "extractor", "matcher")
CAMERAS_N = 4
WARM_UP_S = 45.0
SAMPLE_S = 60.0
ENROLLED = "Lin Manuel Miranda"  # the watch list (ops.bench_pipeline.clip_and_people): in every pass of the clip


def _proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a live process, from /proc."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Fleet:
    """The role processes (``facestream run ROLE``), restartable one by one."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str) -> None:
        log = open(self.logs / f"{role}-{time.time():.0f}.log", "wb")  # noqa: SIM115 - lives with the process
        self.procs[role] = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "run", role], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stats(self) -> dict[str, tuple[int, float, int]]:
        return {role: (p.pid, *_proc_stats(p.pid)) for role, p in self.procs.items() if p.poll() is None}

    def stop(self, role: str, sig: signal.Signals) -> int | None:
        proc = self.procs[role]
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self) -> None:
        for role in list(self.procs):
            if self.procs[role].poll() is None:
                self.stop(role, signal.SIGTERM)


async def soak(settings: Settings, seconds: float, tmp: Path) -> list[str]:
    video, people, label = clip_and_people(tmp)
    events: dict[str, list[FaceEvent]] = defaultdict(list)
    decoded: dict[tuple[str, str], CameraStatus] = {}  # (decoder client, camera) -> latest report
    detected: dict[tuple[str, str], CameraStatus] = {}

    samples: list[tuple[float, dict[str, tuple[int, float, int]]]] = []  # (seconds since start, fleet stats)
    load = os.getloadavg()[0]

    def on_event(message: object) -> None:
        if isinstance(message, FaceEvent):
            events[message.event_id].append(message)

    def on_status(report: CameraStatus) -> None:
        (decoded if report.reporter == "decoder" else detected)[(report.client_id, report.camera_id)] = report

    async with EmbeddedBroker(log_file=tmp / "broker.log") as broker:
        live = settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers,
                                           "data_dir": tmp / "data"})
        await asyncio.to_thread(provision_topics, live, CORE_TOPICS)
        env = {**os.environ, "FACESTREAM_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "FACESTREAM_DATA_DIR": str(tmp / "data"), "FACESTREAM_KAFKA_TOPIC_PREFIX": live.kafka.topic_prefix,
               "FACESTREAM_MODELS_CACHE_DIR": str(live.models.cache_dir), "FACESTREAM_LOG_LEVEL": "WARNING",
               "FACESTREAM_API_MEDIA_ROOT": str(video.parent)}  # the file cameras lie under it (URL policy)
        fleet = Fleet(env, tmp)
        stop = asyncio.Event()
        producer = AsyncProducer(live, client_id="facestream-soak")
        readers = [asyncio.create_task(replay_topic(live, EVENTS, on_event, stop)),
                   asyncio.create_task(replay_topic(live, CAMERA_STATUS, on_status, stop))]
        try:
            from models.faces import FaceModels

            models = await asyncio.to_thread(FaceModels.load, live.models)
            for change in await asyncio.to_thread(gallery_changes, models, people):
                key = change.watch_list.watch_list_id if change.watch_list else change.dossier.dossier_id  # type: ignore[union-attr]
                await producer.send(GALLERY, key, change)
            del models
            for role in ROLES:
                fleet.start(role)
            started = time.monotonic()
            stagger = clip_seconds(video) / CAMERAS_N
            for n in range(CAMERAS_N):  # a clip's length apart in all: real cameras do not cut in step
                if n:
                    await asyncio.sleep(stagger)
                await producer.send(CAMERAS, f"soak-{n}", CameraChanged(camera_id=f"soak-{n}", url=str(video)))
            sampler = asyncio.create_task(_sample(fleet, samples, started))
            await asyncio.sleep(max(0.0, WARM_UP_S - (time.monotonic() - started)))
            at_start = fleet.stats()
            await asyncio.sleep(max(0.0, seconds / 2 - (time.monotonic() - started)))
            decoder_rc = await asyncio.to_thread(fleet.stop, "decoder", signal.SIGTERM)
            fleet.start("decoder")
            await asyncio.sleep(min(30.0, seconds / 6))
            await asyncio.to_thread(fleet.stop, "detector", signal.SIGKILL)
            fleet.start("detector")
            await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
            at_end = fleet.stats()
            sampler.cancel()
            for n in range(CAMERAS_N):  # stop the cameras, let the last frames drain
                await producer.send(CAMERAS, f"soak-{n}", CameraChanged(camera_id=f"soak-{n}", active=False))
            await asyncio.sleep(15)
            elapsed = time.monotonic() - started
        finally:
            await asyncio.to_thread(fleet.stop_all)
            stop.set()
            await asyncio.gather(*readers, return_exceptions=True)
            await producer.close()
    return _report(label, seconds, elapsed, events, decoded, detected, at_start, at_end, decoder_rc, samples, load)


async def _sample(fleet: Fleet, samples: list[tuple[float, dict[str, tuple[int, float, int]]]],
                  started: float) -> None:
    """Every ``SAMPLE_S``: each role process's (pid, RSS MiB, open fds), to see memory level off or not."""
    while True:
        await asyncio.sleep(SAMPLE_S)
        samples.append((time.monotonic() - started, fleet.stats()))


def _latest(reports: dict[tuple[str, str], CameraStatus]) -> list[CameraStatus]:
    """Each camera's latest report among every client's."""
    latest: dict[str, CameraStatus] = {}
    for report in reports.values():
        if report.camera_id not in latest or report.timestamp > latest[report.camera_id].timestamp:
            latest[report.camera_id] = report
    return list(latest.values())


def _report(label: str, seconds: float, elapsed: float, events: dict[str, list[FaceEvent]],
            decoded: dict[tuple[str, str], CameraStatus], detected: dict[tuple[str, str], CameraStatus],
            at_start: dict[str, tuple[int, float, int]], at_end: dict[str, tuple[int, float, int]],
            decoder_rc: int | None, samples: list[tuple[float, dict[str, tuple[int, float, int]]]],
            load: float) -> list[str]:
    collisions = sum(1 for copies in events.values()
                     if len({(e.timestamp, e.frame_key, e.track_id) for e in copies}) > 1)
    redelivered = sum(len(copies) - 1 for copies in events.values())
    per_pass: dict[tuple[str, int], int] = Counter()
    matched_per_pass: dict[tuple[str, int], int] = Counter()
    for event_id, copies in events.items():
        if event_id.count(":") == 3:
            camera, session = copies[0].camera_id, int(event_id.split(":")[1])
            per_pass[(camera, session)] += 1
            matched_per_pass[(camera, session)] += copies[-1].dossier_name == ENROLLED
    sessions_by_camera: dict[str, list[int]] = defaultdict(list)
    for camera, session in per_pass:
        sessions_by_camera[camera].append(session)
    whole = [(c, s) for c, ss in sessions_by_camera.items() for s in sorted(ss)[1:-1]]  # not the first or the last
    counts = [per_pass[p] for p in whole]
    matched = [matched_per_pass[p] for p in whole]
    # counters carry on across owners (a new decoder or detector resumes the camera's last report): per camera
    # the latest report of each kind holds the camera's totals
    last_decoded, last_detected = _latest(decoded), _latest(detected)
    frames_decoded = sum(r.frames_decoded for r in last_decoded)
    frames_detected = sum(r.frames_detected for r in last_detected)
    drops: Counter[str] = Counter()
    for r in (*last_decoded, *last_detected):
        drops.update(r.drops)  # decoders: send_*; detectors: detector_behind (live frames skipped as stale)
    spread = Counter(counts)
    lines = [
        "## Soak: four looping cameras, decoder restart, detector SIGKILL (issue 10)",
        "",
        f"Command: `facestream bench soak --duration {seconds:g}` (not in `make bench` or the tests). Clip: "
        f"{label}, {CAMERAS_N} file cameras looping as live sources at 8 fps, overall mode; roles decoder, "
        "detector, extractor, matcher each a `facestream run` process on the embedded broker; at half time "
        f"the decoder gets SIGTERM (exit code {decoder_rc}) and a new one starts, {min(30.0, seconds / 6):.0f} s "
        f"later the detector gets SIGKILL and a new one starts; the cameras start a quarter of the clip apart. "
        f"Ran {elapsed:.0f} s; {os.cpu_count()} CPU cores, load average {load:.1f} at the start"
        f"{' (other work running: measured under load)' if load > 0.5 else ''}. A pass is one stream session of "
        "a camera (one play of the clip), the first and the last of each camera left out (partial).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| passes (stream sessions) completed | {len(counts)} |",
        f"| events per pass: min / median / max | {min(counts, default=0)} / "
        f"{statistics.median(counts) if counts else 0:g} / {max(counts, default=0)} |",
        f"| events per pass: how many passes had each count | "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(spread.items())) or 'n/a'} |",
        f"| events of the enrolled person ({ENROLLED}) per pass: min / median / max; passes without one | "
        f"{min(matched, default=0)} / {statistics.median(matched) if matched else 0:g} / {max(matched, default=0)}; "
        f"{sum(1 for m in matched if not m)} |",
        f"| distinct event ids / duplicate ids (two different events, one id) | {len(events)} / {collisions} |",
        f"| redeliveries of the same event (at-least-once replays after the SIGKILL) | {redelivered} |",
        f"| frames decoded / frames detected (replays after the SIGKILL included), all cameras | "
        f"{frames_decoded} / {frames_detected} |",
        f"| frames dropped, by reason (decoders: send_*, detectors: detector_behind) | {dict(drops) or 'none'} |",
        f"| decoded - detected - skipped as stale (in flight at the last reports, or lost) | "
        f"{frames_decoded - frames_detected - drops['detector_behind']} |",
        f"| share of decoded frames the detectors skipped as stale (when above a few %, passes see different "
        f"frames and their event counts vary) | {drops['detector_behind'] / max(1, frames_decoded):.0%} |",
    ]
    for role in ROLES:
        s, e = at_start.get(role), at_end.get(role)
        if s and e:
            same = "same process" if s[0] == e[0] else "restarted process"
            lines.append(f"| {role}: RSS MiB / open fds after warm-up -> end ({same}) | "
                         f"{s[1]:.0f} / {s[2]} -> {e[1]:.0f} / {e[2]} |")
    for role in ROLES:
        series = [f"{t / 60:.0f} min {stats[role][1]:.0f}" for t, stats in samples if role in stats]
        if series:
            lines.append(f"| {role}: RSS MiB every {SAMPLE_S:.0f} s (a restart starts afresh) | {', '.join(series)} |")
    lines.append("")
    return lines


def run(settings: Settings, duration: float | None = None) -> str:
    seconds = duration or 600.0
    with tempfile.TemporaryDirectory(prefix="facestream-soak-") as tmp:
        return "\n".join(asyncio.run(soak(settings, seconds, Path(tmp))))
