"""Tracker and best-face selection: the rules an operator notices (one snapshot per person, the best one)."""

from agents.tracking import Candidate, FaceTracker, TrackerPolicy


def cand(frame: int, x: float, quality: float, eligible: bool = True, offset: int = -1) -> Candidate[str]:
    return Candidate(frame, frame * 0.1, (x, 10.0, x + 50.0, 60.0), quality, eligible, f"f{frame}", offset)


def test_overall_posts_the_best_face_once_when_the_track_ends() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy(mode="overall", timeout_s=0.5))
    posts = []
    for i, q in enumerate([0.3, 0.9, 0.5]):
        posts += tracker.update(i, i * 0.1, [cand(i, 100 + i * 2, q)])
    assert posts == []
    posts = tracker.update(20, 2.0, [])  # 1.8 s later: the track has ended
    assert [(p.seq, p.candidate.payload, p.candidate.quality) for p in posts] == [(0, "f1", 0.9)]
    assert tracker.tracks == {}


def test_two_faces_make_two_tracks_with_deterministic_ids() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy())
    tracker.update(5, 0.5, [cand(5, 0, 0.5), cand(5, 300, 0.6)])
    tracker.update(6, 0.6, [cand(6, 302, 0.7), cand(6, 2, 0.4)])
    posts = tracker.flush()
    assert sorted(p.track_id for p in posts) == [5000, 5001]
    assert {p.track_id: p.candidate.quality for p in posts} == {5000: 0.5, 5001: 0.7}


def test_ineligible_faces_extend_the_track_but_are_never_posted() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy())
    tracker.update(0, 0.0, [cand(0, 0, 0.9, eligible=False)])
    tracker.update(1, 0.1, [cand(1, 1, 0.4)])
    posts = tracker.flush()
    assert [p.candidate.payload for p in posts] == ["f1"]


def test_realtime_posts_first_face_at_once_then_the_best_of_each_interval() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy(mode="realtime", realtime_interval_s=1.0))
    posts = tracker.update(0, 0.0, [cand(0, 0, 0.3)])
    assert [p.seq for p in posts] == [0]
    for i in range(1, 12):  # 0.1 s apart: the interval ends at 1.0 s
        posts += tracker.update(i, i * 0.1, [cand(i, i, 0.5 if i != 4 else 0.8)])
    assert [p.candidate.payload for p in posts] == ["f0", "f4"]


def test_open_tracks_hold_back_the_commit_offset() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy())
    tracker.update(0, 0.0, [cand(0, 0, 0.5, offset=100)])
    tracker.update(1, 0.1, [cand(1, 1, 0.5, offset=101)])
    assert tracker.oldest_open_offset() == 100
    tracker.flush()
    assert tracker.oldest_open_offset() is None


def test_a_post_carries_the_tracks_best_faces_best_first() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy(track_faces=3))
    for i, q in enumerate([0.3, 0.9, 0.5, 0.7, 0.2]):
        tracker.update(i, i * 0.1, [cand(i, 100 + i, q, eligible=i != 3)])
    (post,) = tracker.flush()
    assert post.candidate.payload == "f1"
    assert [c.payload for c in post.support] == ["f1", "f2", "f0"]  # f3 was not eligible


def test_realtime_posts_use_the_track_so_far() -> None:
    tracker: FaceTracker[str] = FaceTracker(TrackerPolicy(mode="realtime", realtime_interval_s=1.0, track_faces=2))
    posts = tracker.update(0, 0.0, [cand(0, 0, 0.9)])
    for i in range(1, 12):
        posts += tracker.update(i, i * 0.1, [cand(i, i, 0.4 if i != 5 else 0.6)])
    assert [p.candidate.payload for p in posts] == ["f0", "f5"]
    assert [c.payload for c in posts[0].support] == ["f0"]
    assert [c.payload for c in posts[1].support] == ["f0", "f5"]  # the track so far, best quality first
