"""Accuracy guards of the int8 detector and descriptor (models/quantize.py) against the float models, on
the real faces of ../shared/data/faces: the same detections on the photos, descriptors within cosine 0.995
of float on real chips, and the same verification decisions on every pair of portraits."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from agents.tracking import iou
from models.faces import DEFAULT_MATCH_THRESHOLD, FaceModels, confidence
from tests.conftest import FACES_DIR

pytestmark = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"test media not found at {FACES_DIR}")

PHOTOS = sorted(p.name for p in FACES_DIR.glob("*.jpg")) + sorted(p.name for p in FACES_DIR.glob("*.png"))
WHOLE_FACES = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg",
               "obama-1080p.jpg", "obama_small.jpg", "biden.jpg", "lin-manuel-miranda.png", "alex-lacamoire.png"]


def _image(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES_DIR / name))
    assert image is not None, name
    return image


def _clip_frames(step: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(FACES_DIR / "short_hamilton_clip.mp4"))
    frames, index = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(frame)
        index += 1
    cap.release()
    return frames


@pytest.fixture(scope="module")
def int8_models(face_models: FaceModels) -> FaceModels:
    """Both int8 models (the default is the int8 descriptor with the float detector)."""
    return FaceModels.load(face_models.settings.model_copy(update={"detector_precision": "int8"}))


def test_the_int8_descriptor_is_the_default_and_float_stays_selectable(face_models: FaceModels,
                                                                       float_face_models: FaceModels) -> None:
    assert (face_models.settings.detector_precision, face_models.settings.descriptor_precision) == ("float32", "int8")
    assert float_face_models.settings.descriptor_precision == "float32"


@pytest.mark.parametrize("name", PHOTOS)
def test_same_detections_on_the_shared_photos(int8_models: FaceModels, float_face_models: FaceModels,
                                               name: str) -> None:
    image = _image(name)
    ref, got = float_face_models.detect([image])[0], int8_models.detect([image])[0]
    assert len(got) == len(ref), f"{name}: {len(got)} faces in int8, {len(ref)} in float"
    for r in ref:
        best = max(got, key=lambda g: iou(g.bbox, r.bbox))
        assert iou(best.bbox, r.bbox) >= 0.85
        eye_distance = float(np.linalg.norm(r.landmarks[1] - r.landmarks[0]))
        assert float(np.abs(best.landmarks - r.landmarks).max()) <= 0.12 * eye_distance


def test_descriptor_cosine_to_float_on_real_chips(face_models: FaceModels, float_face_models: FaceModels) -> None:
    """Chips of every face in the photos and in every 15th clip frame (the float detector's faces, aligned as
    the pipeline aligns them), including small and blurred ones."""
    chips = []
    for image in [_image(n) for n in PHOTOS] + _clip_frames(15):
        chips += [float_face_models.align(image, d) for d in float_face_models.detect([image])[0]]
    assert len(chips) >= 40
    cosine = np.sum(face_models.describe(chips) * float_face_models.describe(chips), axis=1)
    assert float(cosine.min()) >= 0.995, f"worst chip: cosine {cosine.min():.4f}"


@pytest.mark.parametrize("pipeline", ["default", "all int8"])
def test_same_verification_decisions_on_the_shared_pairs(face_models: FaceModels, int8_models: FaceModels,
                                                         float_face_models: FaceModels, pipeline: str) -> None:
    """Every pair of whole-face portraits (55 pairs: Obama x8 same-person pairs, the rest different): the int8
    pipelines (int8 descriptor; int8 detector and descriptor) decide same / different exactly as the float one."""
    def descriptors(models: FaceModels) -> np.ndarray:
        chips = []
        for name in WHOLE_FACES:
            image = _image(name)
            det = max(models.detect([image])[0], key=lambda d: (d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1]))
            chips.append(models.align(image, det))
        return models.describe(chips)

    ref = descriptors(float_face_models)
    got = descriptors(face_models if pipeline == "default" else int8_models)
    for i, j in itertools.combinations(range(len(WHOLE_FACES)), 2):
        same_ref = confidence(float(ref[i] @ ref[j])) >= DEFAULT_MATCH_THRESHOLD
        same_got = confidence(float(got[i] @ got[j])) >= DEFAULT_MATCH_THRESHOLD
        assert same_got == same_ref, f"{WHOLE_FACES[i]} vs {WHOLE_FACES[j]}"
        assert same_ref == (WHOLE_FACES[i].startswith("obama") and WHOLE_FACES[j].startswith("obama"))
