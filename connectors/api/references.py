"""Faces named instead of uploaded: ``detection:<id>`` (kept by ``POST /v1/detect`` for ``api.detection_ttl_s``),
``event:<id>`` and ``dossierface:<id>``; and the one helper every face-taking operation uses to get its face
from either a photo or a reference.

A resolved face carries its unit descriptor (128 float32) and, for enrolment, the media key of an image that
shows it with its box in that image (None when the image is the face crop itself).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import cv2
import numpy as np

from connectors.api.core import ApiError, invalid
from connectors.api.faces import AnalysedFace
from connectors.api.state import ApiState
from connectors.api.uploads import Form, decode_image
from connectors.sql.references import DetectionRepository, StoredFace, dossier_face, event_face
from schemas.messages import BBox


@dataclass(frozen=True)
class KnownFace:
    descriptor: np.ndarray  # (128,) float32, L2-normalised
    quality: float
    image_key: str | None = None  # media key of an image showing the face (references)
    bbox: BBox | None = None  # the face's box in that image (None: the image is the face crop)
    image: np.ndarray | None = None  # the decoded upload (photos), BGR uint8


def _unit(values: list[float]) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


async def resolve(st: ApiState, ref: str, field_name: str) -> KnownFace:
    """The face a reference names; 422 (``unknown_reference``) when there is none (or it expired)."""
    kind, _, ident = ref.partition(":")
    stored: StoredFace | None
    if kind == "detection":
        stored = await DetectionRepository(st.engine).get(ident)
    elif kind == "dossierface":
        stored = await dossier_face(st.engine, ident)
    elif kind == "event":
        stored = await event_face(st.engine, ident)
        if stored is not None:
            vector = (await st.vectors.event_vectors([ident])).get(ident)
            stored = None if vector is None else StoredFace(vector, stored.image_key, None, stored.quality)
    else:
        raise invalid(field_name, "a reference is detection:<id>, event:<id> or dossierface:<id>")
    if stored is None or stored.descriptor is None:
        what = "unknown or expired" if kind == "detection" else "unknown"
        raise ApiError(422, f"{field_name}: {what} reference {ref!r}", [{"loc": [field_name], "msg": what}],
                       "unknown_reference")
    return KnownFace(_unit(stored.descriptor), stored.quality, stored.image_key, stored.bbox)


async def photo(st: ApiState, form: Form, name: str) -> np.ndarray:
    """The decoded image of file field ``name`` (BGR uint8)."""
    return await asyncio.get_running_loop().run_in_executor(
        None, decode_image, form.file(name).data, st.settings.api.max_image_pixels, name)


async def face_input(st: ApiState, form: Form, photo_field: str, ref: str | None, ref_field: str) -> KnownFace:
    """The face of an operation: the reference ``ref`` or the largest face of the photo ``photo_field`` (one,
    not both: 422)."""
    has_photo = photo_field in form.files
    if ref is not None and has_photo:
        raise invalid(ref_field, f"give {photo_field} or {ref_field}, not both")
    if ref is not None:
        return await resolve(st, ref, ref_field)
    if not has_photo:
        raise ApiError(422, f"{photo_field}: send a photo, or name a known face in {ref_field}",
                       [{"loc": [photo_field], "msg": "field required"}])
    image = await photo(st, form, photo_field)
    face = await st.faces.one_face(image, "largest", field_name=photo_field)
    assert face.descriptor is not None
    return KnownFace(face.descriptor, face.quality, None, face.bbox, image)


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_in_box(faces: list[AnalysedFace], box: BBox, field_name: str = "box") -> AnalysedFace:
    """The detected face that overlaps ``box`` most (IoU >= 0.3), else 422."""
    best = max(faces, key=lambda f: iou(f.bbox, box), default=None)
    if best is None or iou(best.bbox, box) < 0.3:
        raise ApiError(422, f"{field_name}: no detected face overlaps this box", [{"loc": [field_name],
                       "msg": "no face here"}], "no_face")
    return best


def crop(image: np.ndarray, bbox: BBox, margin: float = 0.5) -> tuple[np.ndarray, BBox]:
    """The face with ``margin`` of its size around it, clipped to the image (a dossier photo of one face of a
    group photo), and the face's box in the crop."""
    x1, y1, x2, y2 = bbox
    w, h = x2 - x1, y2 - y1
    h_img, w_img = image.shape[:2]
    left, top = max(0, int(x1 - margin * w)), max(0, int(y1 - margin * h))
    right, bottom = min(w_img, int(np.ceil(x2 + margin * w))), min(h_img, int(np.ceil(y2 + margin * h)))
    return image[top:bottom, left:right], (x1 - left, y1 - top, x2 - left, y2 - top)


def jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ApiError(400, "the image could not be re-encoded")
    return data.tobytes()
