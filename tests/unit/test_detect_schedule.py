"""Detection every k-th frame: which frames are detected, and the tracker carrying faces across the others."""

from agents.detect_schedule import DetectionSchedule, LiveLoad
from agents.tracking import Candidate, FaceTracker, TrackerPolicy


def frames(schedule: DetectionSchedule, fps: float, n: int, camera: str = "a", session: int = 1) -> list[bool]:
    return [schedule.due(camera, session, i / fps, cut=False) for i in range(n)]


def test_every_kth_frame_with_k_from_the_cameras_frame_rate() -> None:
    schedule = DetectionSchedule(interval_s=0.1)
    assert frames(schedule, 29.97, 7) == [True, False, False, True, False, False, True]
    assert frames(schedule, 25.0, 7, camera="b") == [True, False, False, True, False, False, True]
    assert all(frames(schedule, 8.0, 5, camera="c"))  # slower than the interval: every frame


def test_every_frame_when_the_interval_is_zero() -> None:
    assert all(frames(DetectionSchedule(), 30.0, 5))


def test_a_cut_a_new_session_and_a_forget_detect_at_once() -> None:
    schedule = DetectionSchedule(interval_s=0.1)
    assert schedule.due("a", 1, 0.0, cut=False)
    assert not schedule.due("a", 1, 0.033, cut=False)
    assert schedule.due("a", 1, 0.067, cut=True)  # a new shot is never tracked on a prediction from the old one
    assert not schedule.due("a", 1, 0.1, cut=False)
    assert schedule.due("a", 2, 0.133, cut=False)  # the source reopened
    schedule.forget("a")
    assert schedule.due("a", 2, 0.167, cut=False)
    assert not schedule.due("a", 2, 0.2, cut=False)


def cand(t: float, x: float) -> Candidate[str]:
    return Candidate(int(t * 10), t, (x, 10.0, x + 40.0, 50.0), 0.8, True, f"t{t}")


def test_prediction_carries_a_moving_face_that_iou_alone_would_lose() -> None:
    """A 40 px face moving 10 px per 0.1 s, detected one frame in three: at the next detection it has moved
    30 px from the last one (IoU 0.14, under the 0.3 needed), but the motion model has moved the track with
    it, so the track continues."""
    policy = TrackerPolicy(iou_threshold=0.3)
    carried: FaceTracker[str] = FaceTracker(policy)
    carried.update(0, 0.0, [cand(0.0, 100)])
    carried.update(1, 0.1, [cand(0.1, 110)])
    for t in (0.2, 0.3):
        assert carried.predict(t) == []
    carried.update(4, 0.4, [cand(0.4, 140)])
    assert len(carried.tracks) == 1
    assert carried.tracks[0].bbox == (140, 10.0, 180.0, 50.0)

    lost: FaceTracker[str] = FaceTracker(policy)
    lost.update(0, 0.0, [cand(0.0, 100)])
    lost.update(1, 0.1, [cand(0.1, 110)])
    lost.update(4, 0.4, [cand(0.4, 140)])
    assert len(lost.tracks) == 2


def test_a_prediction_never_keeps_a_face_that_left_alive() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy(timeout_s=0.5))
    tracker.update(0, 0.0, [cand(0.0, 100)])
    assert tracker.predict(0.3) == []
    posts = tracker.predict(0.7)  # 0.7 s after its last detection: the track ends and posts its best face
    assert [p.candidate.payload for p in posts] == ["t0.0"]
    assert tracker.tracks == {}


def test_live_load_stretches_when_frames_come_old_and_relaxes_slowly() -> None:
    load = LiveLoad(target_age_s=0.25, max_extra_s=0.4)
    assert load.observe(0.1, now=0.0) == 0.0  # keeping up
    assert load.observe(0.4, now=1.0) == 0.05  # behind: one step
    assert load.observe(0.4, now=1.2) == 0.05  # not again within UP_EVERY_S
    for t in range(2, 20):
        load.observe(0.9, now=float(t))
    assert load.extra_s == 0.4  # capped
    assert load.observe(0.2, now=21.0) == 0.4  # under the target but above half of it: holds
    assert load.observe(0.05, now=22.0) == 0.35  # well under: one step back
    assert load.observe(0.05, now=23.0) == 0.35  # not again within DOWN_EVERY_S


def test_a_stretch_applies_to_live_streams_only() -> None:
    schedule = DetectionSchedule(interval_s=0.1, live_extra_s=0.05)
    assert frames(schedule, 8.0, 6, camera="live", session=7) == [True, False, True, False, True, False]
    assert all(frames(schedule, 8.0, 6, camera="file", session=0))  # offline files: never stretched
