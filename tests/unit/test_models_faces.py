"""The face models on real photos (../shared/data/faces): detection, landmarks, descriptors, attributes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.faces import DEFAULT_MATCH_THRESHOLD, Detection, FaceModels, confidence
from tests.conftest import FACES_DIR

pytestmark = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"test media not found at {FACES_DIR}")

PORTRAITS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg",
             "obama-1080p.jpg", "obama_small.jpg", "biden.jpg"]


def _image(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES_DIR / name))
    assert image is not None, name
    return image


def _one_face(models: FaceModels, name: str) -> tuple[np.ndarray, Detection]:
    image = _image(name)
    dets = models.detect([image])[0]
    assert len(dets) == 1, f"{name}: {len(dets)} faces"
    return image, dets[0]


def _inside(det: Detection) -> bool:
    x1, y1, x2, y2 = det.bbox
    pts = det.landmarks
    return bool(np.all((pts[:, 0] >= x1) & (pts[:, 0] <= x2) & (pts[:, 1] >= y1) & (pts[:, 1] <= y2)))


@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_per_portrait_with_landmarks_inside(face_models: FaceModels, name: str) -> None:
    _, det = _one_face(face_models, name)
    assert 0.5 < det.score <= 1.0
    assert det.landmarks.shape == (5, 2) and det.landmarks.dtype == np.float32
    assert _inside(det)
    left_eye, right_eye = det.landmarks[0], det.landmarks[1]
    assert left_eye[0] < right_eye[0]


def test_two_faces_in_two_people(face_models: FaceModels) -> None:
    dets = face_models.detect([_image("two_people.jpg")])[0]
    assert len(dets) == 2
    assert all(_inside(d) for d in dets)
    assert dets[0].score >= dets[1].score


def test_batch_of_mixed_sizes_matches_single_calls(face_models: FaceModels) -> None:
    names = ["obama-240p.jpg", "two_people.jpg", "obama-480p.jpg"]
    batch = face_models.detect([_image(n) for n in names])
    for name, dets in zip(names, batch, strict=True):
        single = face_models.detect([_image(name)])[0]
        assert len(dets) == len(single)
        np.testing.assert_allclose(dets[0].bbox, single[0].bbox, atol=1e-3)


def test_frames_of_one_call_run_at_once_find_what_one_batched_run_finds(face_models: FaceModels) -> None:
    """Several frames in one call run at once on single-threaded sessions (``models.concurrent_runs``, the
    default 2; with ``models.threads`` 1 on the one session); with 1 they run as one batch: the same faces
    every way, in the frames' order."""
    batched = FaceModels.load(face_models.settings.model_copy(update={"concurrent_runs": 1}))
    one_thread = FaceModels.load(face_models.settings.model_copy(update={"threads": 1}))
    cap = cv2.VideoCapture(str(FACES_DIR / "short_hamilton_clip.mp4"))
    frames = [frame for _, frame in (cap.read() for _ in range(60))][::20]
    cap.release()
    images = [*frames, _image("two_people.jpg"), _image("obama-1080p.jpg")]
    together = batched.detect(images)
    assert sum(map(len, together)) >= len(images)
    for at_once in (face_models.detect(images), one_thread.detect(images)):
        for got, ref in zip(at_once, together, strict=True):
            assert len(got) == len(ref)
            for g, r in zip(got, ref, strict=True):
                np.testing.assert_allclose(g.bbox, r.bbox, atol=1e-3)
                np.testing.assert_allclose(g.landmarks, r.landmarks, atol=1e-3)


def test_same_person_far_more_similar_than_different(face_models: FaceModels) -> None:
    chips = [face_models.align(*_one_face(face_models, n)) for n in ("obama.jpg", "obama2.jpg", "biden.jpg")]
    assert all(c.shape == (150, 150, 3) and c.dtype == np.uint8 for c in chips)
    desc = face_models.describe(chips)
    assert desc.shape == (3, 128) and desc.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    same, other = float(desc[0] @ desc[1]), float(desc[0] @ desc[2])
    assert confidence(same) > DEFAULT_MATCH_THRESHOLD + 0.15
    assert confidence(other) < DEFAULT_MATCH_THRESHOLD / 10
    assert (1 - other) > 3 * (1 - same)


def test_a_batch_split_into_concurrent_runs_gives_one_runs_descriptors(face_models: FaceModels) -> None:
    """A batch of chips runs as ``models.concurrent_runs`` parts at once: the same descriptors as one run."""
    whole = FaceModels.load(face_models.settings.model_copy(update={"concurrent_runs": 1}))
    image = _image("two_people.jpg")
    chips = [face_models.align(image, d) for d in face_models.detect([image])[0]] * 3
    np.testing.assert_allclose(face_models.describe(chips), whole.describe(chips), atol=1e-6)


def test_describe_is_batch_invariant(face_models: FaceModels) -> None:
    image, det = _one_face(face_models, "obama.jpg")
    chip = face_models.align(image, det)
    one = face_models.describe([chip])
    many = face_models.describe([chip] * 5)
    np.testing.assert_allclose(many, np.repeat(one, 5, axis=0), atol=1e-5)


def test_confidence_is_monotonic_and_bounded() -> None:
    sims = np.linspace(-1, 1, 101)
    conf = confidence(sims)
    assert np.all(np.diff(conf) >= 0) and conf.min() >= 0 and conf.max() <= 1
    assert isinstance(confidence(0.9), float)


def test_quality_in_range_and_blur_lowers_it(face_models: FaceModels) -> None:
    image, det = _one_face(face_models, "obama.jpg")
    sharp = face_models.quality(image, det)
    blurred = face_models.quality(cv2.GaussianBlur(image, (21, 21), 0), det)
    assert 0.0 <= blurred < sharp <= 1.0
    assert sharp > 0.7


def test_emotion_is_a_distribution_on_a_real_face(face_models: FaceModels) -> None:
    image, det = _one_face(face_models, "obama.jpg")  # smiling broadly
    result = face_models.attributes([face_models.align(image, det)])
    emotion = result[0]["emotion"]
    assert set(emotion) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert all(0.0 <= p <= 1.0 for p in emotion.values())
    assert abs(sum(emotion.values()) - 1.0) < 1e-4
    assert max(emotion, key=emotion.__getitem__) == "happy"


def test_no_face_in_a_blank_frame(face_models: FaceModels) -> None:
    assert face_models.detect([np.zeros((360, 640, 3), np.uint8)]) == [[]]


def test_verify_keeps_every_shared_photo_pair_right_at_the_default_threshold(face_models: FaceModels) -> None:
    from ops.bench_calibration import photo_pairs

    same, other = photo_pairs(face_models)
    if not same:
        pytest.skip("shared portraits not found")
    assert min(same) >= DEFAULT_MATCH_THRESHOLD > max(other)
    assert len(same) + len(other) >= 70
