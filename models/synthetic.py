"""Synthetic test media for the attribute and liveness models: a mask drawn on a face, and replays of a
genuine frame as a screen or a print would show it to a camera.

Used by the tests and by ``facestream bench attributes`` (calibration of the liveness threshold). Images are
BGR uint8 HxWx3; boxes (x1, y1, x2, y2) and landmarks (5 x (x, y)) are pixels of the image passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

MASK_COLOURS: tuple[tuple[int, int, int], ...] = ((235, 206, 135), (245, 245, 245), (60, 60, 60), (200, 120, 40))
Replay = Literal["screen", "print", "phone"]
REPLAYS: tuple[Replay, ...] = ("screen", "print", "phone")


def draw_mask(image: np.ndarray, bbox: Sequence[float], landmarks: np.ndarray,
              colour: tuple[int, int, int] = MASK_COLOURS[0]) -> np.ndarray:
    """A copy of ``image`` with a flat surgical-style mask over the nose bridge, mouth and chin of the face."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    points = np.asarray(landmarks, np.float32).reshape(5, 2)
    eye_y = (points[0, 1] + points[1, 1]) / 2
    top = points[2, 1] - 0.25 * (points[2, 1] - eye_y)
    w, h = x2 - x1, y2 - y1
    polygon = np.array([[x1 + 0.02 * w, top], [x2 - 0.02 * w, top], [x2 - 0.05 * w, y1 + 0.85 * h],
                        [(x1 + x2) / 2, y2 + 0.02 * h], [x1 + 0.05 * w, y1 + 0.85 * h]], np.int32)
    out = image.copy()
    cv2.fillPoly(out, [polygon], colour)
    cv2.polylines(out, [polygon], True, tuple(int(c * 0.7) for c in colour), 2)
    return out


def replay(frame: np.ndarray, kind: Replay, seed: int = 0) -> np.ndarray:
    """``frame`` as a camera of the same size would see it shown on a ``screen`` (bezel, pixel grid, moire,
    glare, tilt), a ``print`` (paper border, duller colours, blur, sheet bent) or a ``phone`` held up (small
    display, dark surround, hand-held tilt). Deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = frame.shape[:2]
    if kind == "print":
        content = _print_look(frame, rng)
        border, surround, scale = (245, 245, 240), (90, 110, 120), 0.8
    elif kind == "screen":
        content = _screen_look(frame, rng)
        border, surround, scale = (20, 20, 20), (70, 80, 90), 0.85
    else:
        content = _screen_look(cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA), rng)
        content = cv2.resize(content, (w, h), interpolation=cv2.INTER_LINEAR)
        border, surround, scale = (10, 10, 10), (40, 45, 50), 0.7
    pad = max(4, int(0.04 * min(h, w)))
    framed = cv2.copyMakeBorder(content, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=border)
    fh, fw = framed.shape[:2]
    jitter = rng.uniform(-0.04, 0.04, (4, 2)) * np.array([fw, fh])
    src = np.float32([[0, 0], [fw, 0], [fw, fh], [0, fh]])
    cw, ch = w * scale, h * scale
    ox, oy = (w - cw) / 2, (h - ch) / 2
    dst = np.float32([[ox, oy], [ox + cw, oy], [ox + cw, oy + ch], [ox, oy + ch]]) + jitter.astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    out = np.empty_like(frame)
    out[:] = surround
    out = cv2.warpPerspective(framed, matrix, (w, h), dst=out, borderMode=cv2.BORDER_TRANSPARENT)
    noise = rng.normal(0, 3.0, out.shape)
    return np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _screen_look(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = frame.shape[:2]
    img = frame.astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(2.5, 3.5)
    grid = 0.88 + 0.12 * np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    moire = 1.0 + 0.06 * np.sin(2 * np.pi * (xx * 0.013 + yy * 0.021 + rng.uniform(0, 1)))
    img *= (grid * moire)[:, :, None]
    img = img * np.array([1.04, 1.0, 0.92], np.float32) + 12.0  # cooler white point, raised blacks
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.4) * h
    glare = 60.0 * np.exp(-(((xx - cx) / (0.25 * w)) ** 2 + ((yy - cy) / (0.2 * h)) ** 2))
    img += glare[:, :, None]
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0), 0, 255).astype(np.uint8)


def _print_look(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = frame.astype(np.float32)
    img = 0.75 * img + 0.25 * img.mean(axis=2, keepdims=True)  # duller colours
    img = img * 0.8 + 35.0  # paper does not reach black
    h, w = frame.shape[:2]
    grain = rng.normal(0, 6.0, (h, w, 1)).astype(np.float32)
    img += grain
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    img *= 1.0 - 0.12 * yy**2  # a bent sheet darkens towards its edges
    return np.clip(cv2.GaussianBlur(img, (5, 5), 0), 0, 255).astype(np.uint8)
