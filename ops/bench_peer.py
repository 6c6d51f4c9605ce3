"""``facestream bench peer``: the face_recognition library's method and facestream on the same clip, in one run.

Peer: what ``face_recognition`` does per frame, called through dlib (``dlib-bin``) directly: the HOG frontal
face detector with one upsampling (face_recognition's default), the 5-point shape predictor, the dlib ResNet
descriptor (1 jitter), and a known person where the L2 distance to their portrait's descriptor is <= 0.6
(face_recognition's default tolerance). Its model files come from ``face_recognition_models`` (the pinned
sdist that ``facestream models prepare`` fetches). facestream: every frame of the clip through Kafka end
to end (``decoder.target_fps`` 30, so all 275 frames), after a warm-up run. Both report wall frames/s and
CPU-seconds per frame from process times (robust to other load on a shared machine).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.sources import DLIB_RESNET, extract, fetch
from ops.harness import LocalPipeline
from pipeline import metrics
from pipeline.settings import Settings

COMMAND = "facestream bench peer"
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
CLIP = FACES / "short_hamilton_clip.mp4"
CAST = {"Lin-Manuel Miranda": "lin-manuel-miranda.png", "Alex Lacamoire": "alex-lacamoire.png",
        "Barack Obama": "obama.jpg", "Joe Biden": "biden.jpg"}  # Biden is not in the clip
PREDICTOR = "face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_5_face_landmarks.dat"


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _dlib_files(settings: Settings, tmp: Path) -> tuple[Path, Path]:
    archive = fetch(DLIB_RESNET, settings.models.wheelhouse, tmp)
    resnet = extract(DLIB_RESNET, archive, tmp / "resnet.dat")
    predictor = extract(dataclasses.replace(DLIB_RESNET, member=PREDICTOR), archive, tmp / "sp5.dat")
    return resnet, predictor


def peer(settings: Settings, tmp: Path) -> dict[str, Any]:
    """The face_recognition method on every frame of the clip."""
    import dlib

    resnet, predictor = _dlib_files(settings, tmp)
    detector, shapes = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor))
    encoder = dlib.face_recognition_model_v1(str(resnet))

    def encodings(rgb: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(encoder.compute_face_descriptor(rgb, shapes(rgb, box), 1)) for box in detector(rgb, 1)]

    known = {}
    for name, file in CAST.items():
        found = encodings(cv2.cvtColor(cv2.imread(str(FACES / file)), cv2.COLOR_BGR2RGB))
        if found:
            known[name] = found[0]
    cap = cv2.VideoCapture(str(CLIP))
    frames = faces = 0
    people: set[str] = set()
    cpu, started = _cpu(), time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames += 1
        for enc in encodings(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)):
            faces += 1
            people |= {n for n, k in known.items() if np.linalg.norm(enc - k) <= 0.6}
    wall = time.perf_counter() - started
    return {"frames": frames, "seconds": wall, "cpu": _cpu() - cpu, "faces": faces, "events": "-",
            "people": sorted(people)}


async def _facestream(settings: Settings) -> dict[str, Any]:
    portraits = {name: cv2.imread(str(FACES / file)) for name, file in CAST.items()}
    pipeline = LocalPipeline(settings)
    async with pipeline.running():
        await pipeline.enrol(portraits)
        await pipeline.process(CLIP, "peer-warmup")
        detected = metrics.FACES_DETECTED.labels("detector")._value.get()
        cpu = _cpu()
        result = await pipeline.process(CLIP, "peer-measured")
        cpu = _cpu() - cpu
        detected = metrics.FACES_DETECTED.labels("detector")._value.get() - detected
    return {"frames": result.frames, "seconds": result.seconds, "cpu": cpu, "faces": int(detected),
            "events": len(result.events),
            "people": sorted({e.dossier_name for e in result.events if e.matched and e.dossier_name})}


def run(settings: Settings) -> str:
    if not CLIP.is_file():
        return f"## Peer: face_recognition vs facestream (issue 12)\n\nSkipped: {CLIP} not found.\n"
    with tempfile.TemporaryDirectory(prefix="facestream-peer-") as tmp:
        live = settings.model_copy(update={"data_dir": Path(tmp) / "data",
                                           "decoder": settings.decoder.model_copy(update={"target_fps": 30.0})})
        ours = asyncio.run(_facestream(live))
        theirs = peer(settings, Path(tmp))
    load = os.getloadavg()[0]
    rows = [("face_recognition method (dlib HOG + 5-point + dlib ResNet, dlib-bin), no Kafka", theirs),
            ("facestream, end to end through Kafka (CenterFace + dlib ResNet int8, default settings)", ours)]
    lines = [
        "## Peer: face_recognition vs facestream (issue 12)",
        "",
        f"Command: `{COMMAND}` (ops/bench_peer.py). Clip: short_hamilton_clip.mp4, every frame. "
        f"{os.cpu_count()} CPU cores, measured under load (load average {load:.1f}: other jobs share the cores, "
        "so wall rates are lower bounds; CPU-seconds per frame come from process times and are steadier). "
        "Cast: Lin-Manuel Miranda, Alex Lacamoire, Barack Obama are in the clip, Joe Biden (enrolled too) is not.",
        "",
        "| method | frames | frames/s (wall) | CPU-s per frame | faces found (detections, all frames) "
        "| events | known people found |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['frames']} | {r['frames'] / r['seconds']:.1f} | {r['cpu'] / r['frames']:.3f} "
                     f"| {r['faces']} | {r['events']} | {', '.join(r['people']) or 'none'} |")
    lines += ["", f"facestream / peer, wall frames/s: {(ours['frames'] / ours['seconds']) / (theirs['frames'] / theirs['seconds']):.1f}x; "
              f"CPU per frame: {(theirs['cpu'] / theirs['frames']) / (ours['cpu'] / ours['frames']):.1f}x less.", ""]
    return "\n".join(lines)
