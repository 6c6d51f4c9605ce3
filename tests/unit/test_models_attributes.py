"""Age, gender, mask and liveness models on real faces (../shared/data/faces, skimage's astronaut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.faces import FaceModels
from models.synthetic import MASK_COLOURS, REPLAYS, draw_mask, replay
from schemas.attributes import summarise
from tests.conftest import FACES_DIR

pytestmark = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"test media not found at {FACES_DIR}")

MEN = ["obama.jpg", "obama2.jpg", "obama-720p.jpg", "biden.jpg", "lin-manuel-miranda.png", "alex-lacamoire.png"]


def _astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _image(name: str) -> np.ndarray:
    image = _astronaut() if name == "astronaut" else cv2.imread(str(FACES_DIR / name))
    assert image is not None, name
    return image


def _attributes(models: FaceModels, image: np.ndarray) -> dict[str, dict[str, float]]:
    dets = models.detect([image])[0]
    assert dets, "no face"
    return models.attributes([models.align(image, dets[0])])[0]


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-720p.jpg"])
def test_obama_is_a_man_of_40_to_65(face_models: FaceModels, name: str) -> None:
    summary = summarise(_attributes(face_models, _image(name)))
    assert summary.gender == "male" and summary.gender_score is not None and summary.gender_score > 0.7
    assert summary.age is not None and 40 <= summary.age <= 65


def test_eileen_collins_is_a_woman(face_models: FaceModels) -> None:
    summary = summarise(_attributes(face_models, _astronaut()))
    assert summary.gender == "female"
    assert summary.age is not None and 25 <= summary.age <= 50  # she was 37-39 in the photo


@pytest.mark.parametrize("name", MEN)
def test_men_are_male(face_models: FaceModels, name: str) -> None:
    assert summarise(_attributes(face_models, _image(name))).gender == "male"


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "lin-manuel-miranda.png", "astronaut"])
def test_bare_faces_have_no_mask(face_models: FaceModels, name: str) -> None:
    attrs = _attributes(face_models, _image(name))
    assert summarise(attrs).mask is False
    assert attrs["mask"]["mask"] < 0.3


@pytest.mark.parametrize(("name", "colour"), [("obama.jpg", MASK_COLOURS[0]), ("biden.jpg", MASK_COLOURS[1]),
                                              ("astronaut", MASK_COLOURS[2]), ("obama2.jpg", MASK_COLOURS[3])])
def test_a_drawn_mask_is_detected(face_models: FaceModels, name: str, colour: tuple[int, int, int]) -> None:
    image = _image(name)
    det = face_models.detect([image])[0][0]
    masked = draw_mask(image, det.bbox, det.landmarks, colour)
    attrs = _attributes(face_models, masked)
    assert summarise(attrs).mask is True
    assert attrs["mask"]["mask"] > 0.7


def test_attributes_sit_next_to_emotion(face_models: FaceModels) -> None:
    attrs = _attributes(face_models, _image("obama.jpg"))
    assert {"emotion", "age", "gender", "mask"} <= set(attrs)
    assert set(attrs["gender"]) == {"male", "female"} and abs(sum(attrs["gender"].values()) - 1) < 1e-4
    summary = summarise(attrs)
    assert summary.emotion in attrs["emotion"]


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "obama-720p.jpg", "lin-manuel-miranda.png"])
def test_portraits_are_live(face_models: FaceModels, name: str) -> None:
    image = _image(name)
    det = face_models.detect([image])[0][0]
    assert face_models.liveness([(image, det.bbox)])[0] >= face_models.settings.liveness_threshold


def test_replays_of_a_clip_frame_are_not_live(face_models: FaceModels) -> None:
    capture = cv2.VideoCapture(str(FACES_DIR / "short_hamilton_clip.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 150)
    ok, frame = capture.read()
    capture.release()
    assert ok
    det = max(face_models.detect([frame])[0], key=lambda d: d.bbox[2] - d.bbox[0])
    assert face_models.liveness([(frame, det.bbox)])[0] >= face_models.settings.liveness_threshold
    for kind in REPLAYS:
        shown = replay(frame, kind, seed=150)
        found = face_models.detect([shown])[0]
        assert found, kind
        best = max(found, key=lambda d: d.bbox[2] - d.bbox[0])
        assert face_models.liveness([(shown, best.bbox)])[0] < face_models.settings.liveness_threshold, kind
