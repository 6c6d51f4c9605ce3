"""``facestream demo``: the main job on the embedded defaults, start to finish, in one command.

Enrols a watch list from portraits (file name = person's name), processes a video offline through the
real pipeline (embedded Tansu broker, decoder, detector, extractor, matcher) and prints every event and
a summary. With no arguments it synthesises a clip from scikit-image's astronaut photo (Eileen Collins)
and enrols her from a different crop, so it needs nothing outside the installed packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ops.harness import LocalPipeline, VideoFailedError, VideoResult
from pipeline.settings import Settings
from schemas.messages import FaceEvent, VideoProgress

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def synthesize_clip(path: Path, seconds: float = 4.0, fps: int = 15) -> dict[str, np.ndarray]:
    """Write a 640x360 clip of the astronaut drifting and zooming; return the portrait to enrol
    (a different, tighter crop of the photo, so enrolment and video are not the same pixels)."""
    try:
        from skimage import data
    except ImportError as exc:  # the `demo` extra
        raise SystemExit("the demo's synthesised clip needs scikit-image: pip install 'facestream[demo]' "
                         "(or pass --video and --faces)") from exc

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 360))
    frames = int(seconds * fps)
    for i in range(frames):
        t = i / max(1, frames - 1)
        size = int(300 + 40 * np.sin(t * np.pi))
        canvas = np.full((360, 640, 3), 70, np.uint8)
        x, y = int(20 + t * (640 - size - 40)), 30
        canvas[y:y + min(size, 330), x:x + size] = cv2.resize(photo, (size, size))[: min(size, 330)]
        writer.write(canvas)
    writer.release()
    return {"Eileen Collins": photo[20:260, 120:340].copy()}


def load_portraits(folder: Path) -> dict[str, np.ndarray]:
    people = {}
    for file in sorted(folder.iterdir()):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(file))
            if image is not None:
                people[file.stem.replace("-", " ").replace("_", " ").title()] = image
    if not people:
        raise SystemExit(f"no readable portraits in {folder}")
    return people


async def process_video(settings: Settings, video: Path, people: dict[str, np.ndarray],
                        timeout_s: float = 600, quiet: bool = False) -> VideoResult:
    """Run the spine on one video with a watch list of ``people``; collect its events. Raises
    ``ops.harness.VideoFailedError`` when the decoder reports the video failed."""
    with progress_bar(quiet) as bar:

        def progress(update: VideoProgress) -> None:
            if bar is not None and update.frames_total:
                bar.total = update.frames_total
                bar.update(update.frames_done - bar.n)

        def on_event(event: FaceEvent) -> None:
            (bar.write if bar is not None else print)(format_event(event))

        pipeline = LocalPipeline(settings, on_event=None if quiet else on_event, on_progress=progress)
        async with pipeline.running():
            await pipeline.enrol(people)
            path = await asyncio.to_thread(video.resolve)
            video_id = "demo-" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
            return await pipeline.process(video, video_id, timeout_s)


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[tqdm | None]:
    """The demo's progress bar on stderr (None when ``quiet``); log lines written meanwhile go through the bar
    (``tqdm.write``), so they print on lines of their own instead of tearing it."""
    if quiet:
        yield None
        return
    with logging_redirect_tqdm(), tqdm(desc="frames decoded", unit="frame", leave=False, file=sys.stderr) as bar:
        yield bar


def format_event(e: FaceEvent) -> str:
    when = datetime.fromtimestamp(e.timestamp).strftime("%H:%M:%S.%f")[:-3]
    who = f"{e.dossier_name} (match)" if e.matched else "unknown"
    emotion = max(e.attributes.get("emotion", {"-": 0}).items(), key=lambda kv: kv[1])[0]
    return (f"  {when}  camera={e.camera_id:<18} {who:<28} confidence={e.confidence:.3f} "
            f"quality={e.quality:.2f} emotion={emotion}")


def print_summary(result: VideoResult, people: dict[str, np.ndarray]) -> None:
    matched: dict[str, int] = {}
    for e in result.events:
        if e.matched and e.dossier_name:
            matched[e.dossier_name] = matched.get(e.dossier_name, 0) + 1
    fps = result.frames / result.seconds if result.seconds else 0.0
    print(f"\nsummary: {result.frames} frames in {result.seconds:.1f} s ({fps:.1f} frames/s end to end), "
          f"{len(result.events)} events, {sum(matched.values())} matched")
    for name in people:
        print(f"  {name:<28} {'seen ' + str(matched[name]) + ' time(s)' if name in matched else 'not seen'}")


async def run_demo(settings: Settings, video: Path | None, faces: Path | None) -> int:
    with tempfile.TemporaryDirectory(prefix="facestream-demo-") as tmp:
        if video is None:
            video = Path(tmp) / "astronaut.avi"
            people = synthesize_clip(video)
            print("demo: synthesised a clip from scikit-image's astronaut photo; watch list: Eileen Collins")
        else:
            people = load_portraits(faces) if faces else {}
        if faces and video is not None and not people:
            people = load_portraits(faces)
        data_dir = settings.data_dir if settings.bootstrap_servers else Path(tmp) / "data"
        settings = settings.model_copy(update={"data_dir": data_dir})
        print(f"demo: processing {video} with {len(people)} enrolled person(s)\n")
        try:
            result = await process_video(settings, video, people)
        except VideoFailedError as exc:  # stop at once, one line (the decoder said why)
            print(f"facestream: {exc}", file=sys.stderr)
            return 1
        print_summary(result, people)
    return 0
