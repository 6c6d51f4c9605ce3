"""``facestream bench profile``: where the CPU goes per frame on the clip, stage by stage and step by step.

The real agents (``DetectorAgent``, ``ExtractorAgent``, ``MatcherAgent``) and the decoder's ``FrameSource`` run
on every frame of ``short_hamilton_clip.mp4`` in this process, chained by hand instead of through the broker:
each message is serialised and parsed exactly as on its topic (``Message.to_bytes`` / ``TopicSpec.decode``),
batches of ``kafka.max_batch`` as a stage's consumer takes them, the face media written to a real local media
store. The agents' executor runs their blocking work inline (same thread), so one CPU clock sees it all:

1. a plain pass measures each stage's CPU-seconds (process time, ONNX Runtime's worker threads included);
2. a second pass under ``cProfile`` (process-time clock; ``models.concurrent_runs`` 1, so no step runs in an
   engine's worker thread, out of the profiler's sight) splits each stage into its steps (decode, detector
   pre-processing / inference / decoding, tracking, alignment, quality, descriptor, attributes, media, ...),
   scaled by the stage's plain / profiled ratio (removing the profiler's own overhead); what no named step
   holds is the stage's "rest" (message building, the agent's own bookkeeping).

Then the clip runs end to end through Kafka (``LocalPipeline``, all roles in this process, the embedded broker
beside it): its CPU per frame minus the in-process chain's is what the Kafka clients, the stage runner and the
event loop cost, and the broker's own CPU is shown apart. ``detector.detect_interval_s`` is taken from the settings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from agents.decoder import FrameSource
from agents.detector import DetectorAgent
from agents.extractor import ExtractorAgent
from agents.matcher import MatcherAgent
from agents.matching import Gallery
from connectors.media import LocalMediaStore
from models.faces import FaceModels, confidences
from ops.bench_peer import CAST, CLIP, FACES
from ops.harness import LocalPipeline, gallery_changes
from ops.synthetic_cameras import SCENARIOS, scenario_settings, synthetic_source
from pipeline.settings import Settings
from pipeline.stage import Incoming, Output
from schemas.messages import FaceEvent, Frame, StreamEnd
from schemas.topics import DESCRIPTORS, FRAMES, TopicSpec
from schemas.topics import FACES as FACES_TOPIC

COMMAND = "facestream bench profile"

# Steps: (stage, step label, (file suffix, function name) whose cumulative profiled time it is). None of
# them calls another, except the detector's inference, which is computed (see ``split_steps``).
INFERENCE = "detect: inference (ONNX Runtime)"
STEPS: list[tuple[str, str, tuple[str, str]]] = [
    ("detector", "JPEG decode (full, frames detected)", ("agents/detector.py", "decode_jpeg")),
    ("detector", "JPEG decode at 1/8 (every frame, for the signature)", ("agents/detector.py", "decode_preview")),
    ("detector", "shot-cut signature", ("agents/shots.py", "colour_signature")),
    ("detector", "detect: pre-processing (resize, BGR->RGB)", ("models/centerface.py", "preprocess")),
    ("detector", "detect: map decoding + NMS", ("models/detectors/centerface.py", "_to_detections")),
    ("detector", "alignment (warpAffine to 150x150)", ("models/faces.py", "align")),
    ("detector", "quality score", ("models/faces.py", "quality")),
    ("detector", "tracking + best face", ("agents/tracking.py", "update")),
    ("detector", "tracking: prediction (skipped frames)", ("agents/tracking.py", "predict")),
    ("detector", "posts: thumbnail JPEG, media writes, Face messages", ("agents/detector.py", "_to_faces")),
    ("extractor", "descriptor (dlib ResNet)", ("models/faces.py", "describe")),
    ("extractor", "attributes (emotion, age/gender, mask)", ("models/faces.py", "attributes")),
    ("extractor", "chips from the message", ("agents/extractor.py", "chip_image")),
    ("matcher", "gallery search", ("agents/matching.py", "match")),
]
STAGE_ORDER = ("decoder", "frames (de)serialisation", "detector", "faces (de)serialisation", "extractor",
               "descriptors (de)serialisation", "matcher", "events serialisation")


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each submitted call at once, in the caller's thread (so one profiler and one clock see it)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(exc)
        return future


def load_note() -> str:
    """How loaded the machine was, for a benchmark's text (a 2-thread benchmark alone on 2 cores is ~2)."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    loaded = load > cores + 0.3
    return (f"{cores} CPU cores, load average {load:.1f} when measured ("
            + ("above this benchmark's own: other jobs shared the cores, measured under load)" if loaded
               else "about this benchmark's own)"))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class ChainRun:
    frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> CPU-seconds
    events: list[FaceEvent] = field(default_factory=list)
    wall: float = 0.0


class _Chain:
    """The stages chained in process (see the module docstring)."""

    def __init__(self, settings: Settings, models: FaceModels, media: LocalMediaStore, gallery: Gallery) -> None:
        self.settings = settings
        self.detector = DetectorAgent(settings=settings, models=models, media=media)
        self.extractor = ExtractorAgent(settings=settings, models=models)
        self.matcher = MatcherAgent(settings=settings, gallery=gallery)
        self.run = ChainRun()
        self._offsets: dict[str, int] = {}

    def _timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        started = _cpu()
        result = fn()
        self.run.seconds[stage] = self.run.seconds.get(stage, 0.0) + _cpu() - started
        return result

    def _wire(self, stage: str, topic: TopicSpec, outputs: list[Output]) -> list[Incoming]:
        """Outputs serialised and parsed as their topic would carry them, with offsets."""
        def cross() -> list[Incoming]:
            items = []
            for out in outputs:
                raw = out.topic.encode(out.message)
                offset = self._offsets[topic.name] = self._offsets.get(topic.name, -1) + 1
                items.append(Incoming(topic, out.key, topic.decode(raw), 0, offset, 0))
            return items
        return self._timed(stage, cross)  # type: ignore[no-any-return]

    async def feed(self, frames: list[Output]) -> None:
        size = self.settings.kafka.max_batch
        for start in range(0, len(frames), size):
            incoming = self._wire("frames (de)serialisation", FRAMES, frames[start : start + size])
            faces = await self._stage("detector", self.detector.handle, incoming)
            described = await self._stage("extractor", self.extractor.handle,
                                          self._wire("faces (de)serialisation", FACES_TOPIC, faces))
            events = await self._stage("matcher", self.matcher.handle,
                                       self._wire("descriptors (de)serialisation", DESCRIPTORS, described))
            self._timed("events serialisation", lambda events=events: [o.topic.encode(o.message) for o in events])
            self.run.events += [o.message for o in events if isinstance(o.message, FaceEvent)]

    async def _stage(self, stage: str, handle: Callable[[list[Incoming]], Any], batch: list[Incoming]) -> list[Output]:
        if not batch:
            return []
        started = _cpu()
        outputs: list[Output] = await handle(batch)
        self.run.seconds[stage] = self.run.seconds.get(stage, 0.0) + _cpu() - started
        return outputs


def _decode_clip(settings: Settings, clip: Path) -> tuple[list[Output], float]:
    """Every frame of ``clip`` as the decoder publishes it (Frame messages, then the StreamEnd), and the
    decoder's CPU-seconds (video decode, resize, JPEG encode)."""
    started = _cpu()
    source = FrameSource(str(clip), settings.decoder)
    outputs: list[Output] = []
    base = time.time()
    while (decoded := source.read()) is not None:
        frame = Frame(camera_id="video:profile", camera_group="default", frame_no=decoded.index,
                      timestamp=base + decoded.position_s, offset_s=round(decoded.position_s, 6),
                      width=decoded.width, height=decoded.height, jpeg=decoded.jpeg, video_id="profile")
        outputs.append(Output(FRAMES, frame.camera_id, frame))
    source.close()
    end = StreamEnd(camera_id="video:profile", video_id="profile", frames_total=len(outputs))
    return [*outputs, Output(FRAMES, "video:profile", end)], _cpu() - started


def chain_run(settings: Settings, models: FaceModels, tmp: Path, profiler: cProfile.Profile | None = None,
              clip: Path = CLIP) -> ChainRun:
    """``clip`` through the in-process chain once (under ``profiler`` when given)."""
    gallery = Gallery(confidences, settings.matcher.threshold)
    portraits = {name: cv2.imread(str(FACES / file)) for name, file in CAST.items()}
    for change in gallery_changes(models, portraits):
        gallery.apply(change)
    frames, decoder_cpu = _decode_clip(settings, clip)
    chain = _Chain(settings, models, LocalMediaStore(tmp / "media"), gallery)

    async def go() -> None:
        asyncio.get_running_loop().set_default_executor(_InlineExecutor())
        await chain.feed(frames)

    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(go())
    finally:
        if profiler is not None:
            profiler.disable()
    chain.run.wall = time.perf_counter() - started
    chain.run.seconds["decoder"] = decoder_cpu
    chain.run.frames = len(frames) - 1
    return chain.run


def split_steps(profiler: cProfile.Profile) -> dict[tuple[str, str], float]:
    """(stage, step) -> profiled seconds, each step's time net of the inner steps listed before it."""
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    cumulative: dict[tuple[str, str], float] = {}
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        for stage, label, (suffix, func) in STEPS:
            if name == func and filename.replace(os.sep, "/").endswith(suffix):
                cumulative[(stage, label)] = cumulative.get((stage, label), 0.0) + ct
    # the engine is shared by detector and descriptor: the detector's inference is its detect call net of
    # its pre-processing and decoding
    detect = sum(ct for (f, _l, n), (_a, _b, _c, ct, _d) in stats.items()
                 if n == "detect" and f.replace(os.sep, "/").endswith("models/detectors/centerface.py"))
    inner = sum(t for (stage, label), t in cumulative.items() if stage == "detector" and label.startswith("detect:"))
    cumulative[("detector", INFERENCE)] = max(0.0, detect - inner)
    return cumulative


@dataclass(frozen=True)
class KafkaRun:
    """The clip end to end through Kafka once (after a warm-up run): frames, wall seconds, this process's and
    the broker's CPU-seconds, the events."""

    frames: int
    wall: float
    cpu: float
    broker_cpu: float
    events: list[FaceEvent]


async def through_kafka(settings: Settings) -> KafkaRun:
    """The clip end to end through Kafka (``LocalPipeline``: the spine's roles in this process)."""
    portraits = {name: cv2.imread(str(FACES / file)) for name, file in CAST.items()}
    pipeline = LocalPipeline(settings)
    async with pipeline.running():
        await pipeline.enrol(portraits)
        await pipeline.process(CLIP, "profile-warmup")
        broker = _broker_cpu()
        cpu = _cpu()
        result = await pipeline.process(CLIP, "profile-measured")
        cpu = _cpu() - cpu
        broker = _broker_cpu() - broker
    return KafkaRun(result.frames, result.seconds, cpu, broker, result.events)


def _broker_cpu() -> float:
    """CPU-seconds of this process's child processes (the embedded broker), 0 without psutil."""
    try:
        import psutil
    except ImportError:
        return 0.0
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _split(settings: Settings, models: FaceModels, tmp: Path, clip: Path) -> tuple[ChainRun, ChainRun, dict[tuple[str, str], float]]:
    """The plain pass at the settings; the profiled pass with ``models.concurrent_runs`` 1, so the detector's
    pre- and post-processing run in this thread, where the profiler sees them (with several runs at once they
    run in the engine's worker threads and would count as inference); its steps are scaled to the plain pass."""
    chain_run(settings, models, tmp / "warm", clip=clip)  # model warm-up, caches
    plain = chain_run(settings, models, tmp / "plain", clip=clip)
    one_run = settings.model_copy(update={"models": settings.models.model_copy(update={"concurrent_runs": 1})})
    single = FaceModels.load(one_run.models) if settings.models.concurrent_runs > 1 else models
    chain_run(one_run, single, tmp / "warm-profiled", clip=clip)
    profiler = cProfile.Profile(time.process_time)
    profiled = chain_run(one_run, single, tmp / "profiled", profiler, clip=clip)
    return plain, profiled, split_steps(profiler)


def profile(settings: Settings) -> dict[str, Any]:
    """All figures: the plain chain pass, the profiled split, the run through Kafka; and the chain on a
    synthetic 1080p camera at 8 fps (``ops.synthetic_cameras``' first scenario)."""
    with tempfile.TemporaryDirectory(prefix="facestream-profile-") as tmp:
        plain, profiled, steps = _split(settings, FaceModels.load(settings.models), Path(tmp) / "clip", CLIP)
        kafka = asyncio.run(through_kafka(settings.model_copy(update={"data_dir": Path(tmp) / "data"})))
        camera = SCENARIOS[0]
        source = synthetic_source(camera, Path(tmp))
        live = scenario_settings(settings, camera, Path(tmp) / "camera-data", source)
        big = _split(live, FaceModels.load(live.models), Path(tmp) / "camera", source)
    return {"plain": plain, "profiled": profiled, "steps": steps, "kafka": kafka, "camera": (camera.label, *big)}


def _step_rows(plain: ChainRun, profiled: ChainRun, steps: dict[tuple[str, str], float], total: float) -> list[str]:
    """The stage and step rows of a profile table: CPU-ms per frame and share of ``total`` CPU-seconds."""
    n = plain.frames

    def cells(seconds: float) -> str:
        return f"{seconds / n * 1000:.2f} | {seconds / total * 100:.1f} %"

    lines = []
    for stage in STAGE_ORDER:
        seconds = plain.seconds.get(stage, 0.0)
        lines.append(f"| **{stage}** | (all) | " + " | ".join(f"**{c.strip()}**" for c in cells(seconds).split("|")) + " |")
        named = [(label, t) for (s, label), t in steps.items() if s == stage and t > 0]
        profiled_stage = profiled.seconds.get(stage, 0.0)
        scale = seconds / profiled_stage if profiled_stage > 0 else 0.0
        for label, t in sorted(named, key=lambda x: -x[1]):
            lines.append(f"| | {label} | {cells(t * scale)} |")
        if named:
            rest = max(0.0, seconds - sum(t for _, t in named) * scale)
            lines.append(f"| | rest (messages, agent bookkeeping) | {cells(rest)} |")
    return lines


def render(settings: Settings, figures: dict[str, Any]) -> str:
    plain: ChainRun = figures["plain"]
    profiled: ChainRun = figures["profiled"]
    steps: dict[tuple[str, str], float] = figures["steps"]
    kafka: KafkaRun = figures["kafka"]
    frames, kafka_cpu, broker_cpu, kafka_events = kafka.frames, kafka.cpu, kafka.broker_cpu, len(kafka.events)
    n = plain.frames
    chain_total = sum(plain.seconds.values())
    total = max(kafka_cpu, chain_total)

    def ms(seconds: float) -> str:
        return f"{seconds / n * 1000:.2f}"

    def share(seconds: float) -> str:
        return f"{seconds / total * 100:.1f} %"

    people = sorted({e.dossier_name for e in plain.events if e.matched and e.dossier_name})
    lines = [
        "## Per-stage CPU profile (issue 12)",
        "",
        f"Command: `{COMMAND}` (ops/bench_profile.py). Clip: short_hamilton_clip.mp4, all {n} frames "
        f"(decoder.target_fps {settings.decoder.target_fps:g}), detector.detect_interval_s "
        f"{settings.detector.detect_interval_s:g}, detector {settings.models.detector_precision}, descriptor "
        f"{settings.models.descriptor_precision}, {settings.models.threads} ONNX Runtime threads; "
        f"{load_note()}. CPU-ms are process CPU time per "
        "frame of the clip (ONNX Runtime's threads included); shares are of the run through Kafka "
        "(this process; the broker is apart).",
        "",
        "| stage | step | CPU-ms per frame | share |",
        "|---|---|---:|---:|",
    ]
    lines += _step_rows(plain, profiled, steps, total)
    overhead = max(0.0, kafka_cpu / frames - chain_total / n) * n
    lines += [
        f"| **Kafka clients, stage runners, event loop** | end to end through Kafka minus the chain above "
        f"| **{ms(overhead)}** | **{share(overhead)}** |",
        f"| **total, end to end through Kafka** ({frames} frames, {kafka_events} events) | this process "
        f"| **{kafka_cpu / frames * 1000:.2f}** | 100 % |",
        f"| (wall) end to end through Kafka | frames/s | {frames / kafka.wall:.1f} | |",
        f"| (apart) embedded broker (tansu) | its own process | {broker_cpu / frames * 1000:.2f} | |",
        "",
        f"In-process chain: {chain_total / n * 1000:.1f} CPU-ms per frame, {n / plain.wall:.1f} frames/s on one "
        f"thread of control, {len(plain.events)} events, known people: {', '.join(people) or 'none'}. "
        f"At {kafka_cpu / frames * 1000:.1f} CPU-ms per frame in this process and "
        f"{broker_cpu / frames * 1000:.1f} in the broker, two idle cores could carry at most "
        f"{2 * frames / (kafka_cpu + broker_cpu):.0f} frames/s end to end.",
        "",
    ]
    label, c_plain, c_profiled, c_steps = figures["camera"]
    c_total = sum(c_plain.seconds.values())
    lines += [
        f"### The same chain on a synthetic live camera: {label}",
        "",
        f"The clip scaled to 1920x1080 and resampled to 8 fps ({c_plain.frames} frames; `facestream bench cameras`' "
        f"source), models.detector_min_face 40, in-process chain only: {c_total / c_plain.frames * 1000:.1f} "
        "CPU-ms per frame; shares of the chain.",
        "",
        "| stage | step | CPU-ms per frame | share |",
        "|---|---|---:|---:|",
        *_step_rows(c_plain, c_profiled, c_steps, c_total),
        "",
    ]
    return "\n".join(lines)


def run(settings: Settings) -> str:
    if not CLIP.is_file():
        return f"## Per-stage CPU profile (issue 12)\n\nSkipped: {CLIP} not found.\n"
    settings = settings.model_copy(update={"decoder": settings.decoder.model_copy(update={"target_fps": 30.0})})
    return render(settings, profile(settings))

