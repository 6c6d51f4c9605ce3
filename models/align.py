"""Alignment of CenterFace's 5 landmarks onto a 150x150 chip, the input of the dlib ResNet descriptor.

The template is derived from dlib's mean face through dlib's own alignment. dlib aligns its 5-point
shape (eye corners, nose base) onto its mean-face template (``get_face_chip_details``, 150 px,
padding 0.25); CenterFace's points are different features (eye centres, nose tip, mouth corners), and
taking their nominal positions in the 68-point mean face (eye means, point 30, points 48/54) lands
L2 0.12-0.37 (median 0.19) away from dlib's own descriptor of the same face. So the template below is the
mean position of CenterFace's 5 points inside dlib's own chips, over the 14 whole faces of
``shared/data/faces`` and skimage's astronaut (per-point spread 2-4 px); with it the descriptor lands
L2 0.08-0.24 (median 0.13; partial faces up to 0.31) from dlib's, against 0.6 for "same person", part of which is
the two
detectors' landmark noise. Coordinates are normalised to dlib's unit mean-face square, then padded as
dlib does, ``(p + padding) / (1 + 2 padding) * size``. A least-squares similarity transform (Umeyama,
as dlib's ``find_similarity_transform``) maps the detected points onto the template; large faces are
first halved with a Gaussian pyramid as dlib's ``extract_image_chip`` does, then ``cv2.warpAffine``
samples the chip bilinearly.

Enrolment and queries must go through this same function, so their descriptors are comparable.

Points are (x, y) pixels, ordered: left eye, right eye, nose, mouth left, mouth right, where left/right
are image left/right (the subject's right eye is the image-left one).
"""

from __future__ import annotations

import cv2
import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25

_MEAN_FACE_POINTS = np.array(
    [
        [0.1964, 0.1994],  # image-left eye
        [0.7943, 0.2027],  # image-right eye
        [0.5075, 0.5242],  # nose tip
        [0.2202, 0.8050],  # mouth, image-left corner
        [0.7319, 0.8070],  # mouth, image-right corner
    ],
    dtype=np.float64,
)


def template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The 5-point template in chip pixels, (5, 2) float64 (x, y)."""
    return (_MEAN_FACE_POINTS + padding) / (1 + 2 * padding) * size


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking ``src`` points
    (N, 2) onto ``dst`` (N, 2); returns the 2x3 matrix for ``cv2.warpAffine`` (Umeyama 1991)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, sing, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rot = u @ d @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = float(np.trace(np.diag(sing) @ d) / var_src) if var_src > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def align_chip(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE,
               padding: float = CHIP_PADDING) -> np.ndarray:
    """The aligned ``size`` x ``size`` x 3 chip (same dtype and colour order as ``image_bgr``) for the 5
    ``landmarks`` ((5, 2) pixels of ``image_bgr``). Outside the image is black."""
    matrix = similarity(landmarks, template(size, padding))
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    if scale < 0.5:
        image_bgr, matrix = _downscale(image_bgr, matrix, scale, size)
    return cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _downscale(image: np.ndarray, matrix: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop the chip's footprint (plus a margin) and halve it with ``cv2.pyrDown`` (the 5-tap Gaussian
    pyramid dlib's ``extract_image_chip`` uses) while the chip would still be sampled at under half a
    pixel per pixel; returns the reduced crop and the matrix re-expressed in its pixels."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    h, w = image.shape[:2]
    margin = 8
    x0, y0 = (np.clip(np.floor(corners.min(0)).astype(int) - margin, 0, [w - 1, h - 1]) // 2) * 2
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + margin, [x0 + 2, y0 + 2], [w, h])
    crop = image[y0:y1, x0:x1]
    to_crop = np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1]])  # crop pixel -> image pixel
    while scale < 0.5 and min(crop.shape[:2]) >= 4:
        crop = cv2.pyrDown(crop)
        to_crop = to_crop @ np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])  # level k+1 -> level k
        scale *= 2
    return crop, matrix @ to_crop
