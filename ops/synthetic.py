"""A synthetic 1080p crowd clip: portrait faces of 32-60 px, moving across a textured background.

Used by the small-face test and ``facestream bench smallfaces``. Each person's face is cut out of a portrait
(the largest detected face, with a margin), then pasted frame by frame on a 1920x1080 background while it
drifts across the frame and grows, as people walking towards a camera do. ``write_crowd_clip`` returns where
each face is in every frame, so a test can check that every face was found and posted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.faces import FaceModels

FRAME_SIZE = (1920, 1080)  # width, height
_MARGIN = 1.8  # crop side / face box side


@dataclass(frozen=True)
class FacePath:
    """Where one pasted face is in every frame: boxes (x1, y1, x2, y2) of the face itself, source pixels."""

    name: str
    boxes: list[tuple[float, float, float, float]]


def face_cutout(models: FaceModels, portrait: np.ndarray) -> tuple[np.ndarray, float]:
    """The largest face of a BGR portrait with a margin (a square BGR crop) and the face box's width as a
    fraction of the crop's."""
    faces = models.detect([portrait])[0]
    if not faces:
        raise ValueError("no face in the portrait")
    x1, y1, x2, y2 = max(faces, key=lambda d: d.bbox[2] - d.bbox[0]).bbox
    side = max(x2 - x1, y2 - y1) * _MARGIN
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    padded = cv2.copyMakeBorder(portrait, 2000, 2000, 2000, 2000, cv2.BORDER_REFLECT)
    xa, ya = round(cx - side / 2) + 2000, round(cy - side / 2) + 2000
    crop = padded[ya : ya + round(side), xa : xa + round(side)]
    return crop, (x2 - x1) / crop.shape[1]


def _background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = FRAME_SIZE
    base = np.linspace(60, 150, w, dtype=np.float32)[None, :, None] * np.array([0.9, 1.0, 1.1], np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, 30, (h, w, 3)).astype(np.float32), (0, 0), 6)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_crowd_clip(path: Path, models: FaceModels, portraits: dict[str, np.ndarray], frames: int = 24,
                     fps: float = 8.0, sizes: tuple[float, float] = (32.0, 60.0)) -> list[FacePath]:
    """Write an MJPEG AVI of ``frames`` 1920x1080 frames at ``fps`` in which each portrait's face grows from
    ``sizes[0]`` to ``sizes[1]`` px wide while it drifts ~150 px; faces are spread over the frame and never
    overlap. Returns each face's boxes per frame (source pixels)."""
    w, h = FRAME_SIZE
    cutouts = {name: face_cutout(models, image) for name, image in portraits.items()}
    starts = [(160 + (i % 4) * 430, 200 + (i // 4) * 420 + (i % 2) * 120) for i in range(len(cutouts))]
    background = _background(len(cutouts))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    paths = [FacePath(name, []) for name in cutouts]
    try:
        for f in range(frames):
            t = f / max(1, frames - 1)
            canvas = background.copy()
            for i, ((crop, fraction), track) in enumerate(zip(cutouts.values(), paths, strict=True)):
                face_w = sizes[0] + (sizes[1] - sizes[0]) * t
                side = max(8, round(face_w / fraction))
                patch = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
                x = round(starts[i][0] + 150 * t * (1 if i % 2 else -0.6))
                y = round(starts[i][1] + 60 * t)
                x, y = min(max(0, x), w - side), min(max(0, y), h - side)
                canvas[y : y + side, x : x + side] = patch
                cx, cy = x + side / 2, y + side / 2
                track.boxes.append((cx - face_w / 2, cy - face_w / 2, cx + face_w / 2, cy + face_w / 2))
            writer.write(canvas)
    finally:
        writer.release()
    return paths
