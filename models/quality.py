"""A per-face quality score in [0, 1]: how usable a detected face is for recognition.

``quality = det^0.15 * size^0.25 * sharpness^0.4 * pose^0.2`` (a weighted geometric mean, so one bad
factor pulls the whole score down), each factor in [0, 1]:

- ``det``: CenterFace's score mapped linearly from 0.3 -> 0 to 0.9 -> 1 (the default threshold 0.5 gives 0.33).
- ``size``: the face box's width in image pixels, 20 px -> 0 to 80 px -> 1 (the box, not the eye distance,
  which shrinks as a face turns while its resolution does not; the default posting minimum 40 px gives 0.33).
- ``sharpness``: variance of the Laplacian of the grey aligned chip's central face area,
  ``v / (v + 60)`` (a crisp portrait chip gives 100-800, so 0.6-0.93; heavy blur or an upscaled tiny
  face gives under 20, so under 0.25; an out-of-focus background face under 0.05).
- ``pose``: from the landmarks: yaw as the nose's offset from the eyes' midline in eye distances
  (0 frontal, ~0.5 at a profile) and pitch as the nose's height between the eye line and the mouth line
  (0.535 frontal, as in the alignment template); ``(1 - |yaw| / 0.45) * (1 - |pitch - 0.535| / 0.3)``
  clipped to [``POSE_FLOOR``, 1].

Why these weights (measured on ``short_hamilton_clip.mp4``, every detection labelled by hand): the
descriptor of an out-of-focus face is not just noisy but drifts towards every face at once (blurred
audience members in the background lay at confidence 0.5-0.74 from Alex Lacamoire's portrait), while a
sharp face turned three-quarters away is still recognisable (Barack Obama, hand at his chin: 0.3-0.7 from
his portrait, pose factor 0 on every frame). Sharpness therefore weighs most and the pose factor is floored
at 0.25; with the former weights (sharpness 0.25, pose 0.25 unfloored, eye-distance size) Obama scored
0.04-0.07 and blurred strangers 0.15-0.23, so the posting filter kept the wrong ones.

Scale: about 0.8-0.95 for a sharp frontal portrait, 0.4-0.7 for a usable surveillance face (Obama's
turned face ~0.4), under 0.2 for out-of-focus faces that should not be matched (the detector's
``min_quality`` default is 0.25).
"""

from __future__ import annotations

import cv2
import numpy as np

_WEIGHTS = {"det": 0.15, "size": 0.25, "sharpness": 0.4, "pose": 0.2}
_FLOOR = 1e-3
POSE_FLOOR = 0.25


def _ramp(value: float, low: float, high: float) -> float:
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def det_factor(score: float) -> float:
    """Detector confidence factor: 0.3 -> 0, 0.9 -> 1."""
    return _ramp(score, 0.3, 0.9)


def size_factor(face_width: float) -> float:
    """Face box width (pixels) factor: 20 px -> 0, 80 px -> 1."""
    return _ramp(face_width, 20.0, 80.0)


def sharpness_factor(chip_bgr: np.ndarray) -> float:
    """Laplacian-variance factor ``v / (v + 60)`` on the central 100x100 of a 150x150 chip."""
    grey = cv2.cvtColor(chip_bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    centre = grey[h // 6 : h - h // 6, w // 6 : w - w // 6]
    variance = float(cv2.Laplacian(centre, cv2.CV_64F).var())
    return variance / (variance + 60.0)


def pose_factor(landmarks: np.ndarray) -> float:
    """Frontality from the 5 points (left eye, right eye, nose, mouth left, mouth right), 1 = frontal."""
    eyes_mid = (landmarks[0] + landmarks[1]) / 2
    mouth_mid = (landmarks[3] + landmarks[4]) / 2
    axis_x = landmarks[1] - landmarks[0]
    eye_dist = float(np.linalg.norm(axis_x))
    if eye_dist < 1e-6:
        return 0.0
    ux = axis_x / eye_dist
    uy = np.array([-ux[1], ux[0]])
    nose = landmarks[2] - eyes_mid
    yaw = float(nose @ ux) / eye_dist
    face_height = float((mouth_mid - eyes_mid) @ uy)
    if face_height <= 1e-6:
        return 0.0
    pitch = float(nose @ uy) / face_height
    return float(np.clip(1 - abs(yaw) / 0.45, 0, 1) * np.clip(1 - abs(pitch - 0.535) / 0.3, 0, 1))


def quality_score(score: float, landmarks: np.ndarray, chip_bgr: np.ndarray, face_width: float) -> float:
    """The combined quality in [0, 1] (see the module docstring) of a face detected with ``score``,
    5 ``landmarks`` and a box ``face_width`` pixels wide (image pixels), whose aligned 150x150 BGR chip is
    ``chip_bgr``."""
    factors = {
        "det": det_factor(score),
        "size": size_factor(face_width),
        "sharpness": sharpness_factor(chip_bgr),
        "pose": max(POSE_FLOOR, pose_factor(landmarks)),
    }
    log_q = sum(w * np.log(max(factors[k], _FLOOR)) for k, w in _WEIGHTS.items())
    return float(np.clip(np.exp(log_q), 0.0, 1.0))
