"""Episode rules (agents/episode_rules.py): join, open, close by time-out / max duration / end / idle,
summary fields, and recovery from the state records."""

from __future__ import annotations

import numpy as np

from agents.episode_rules import EpisodeBuilder, EpisodeRules
from tests.unit.notify_helpers import event, near, person

RULES = EpisodeRules(threshold=0.6, search_interval_s=60, max_duration_s=300, event_timeout_s=30, video_idle_s=120)


def raw_cosine(cosines: np.ndarray) -> np.ndarray:
    """These rule tests state their threshold on the cosine itself (the stage injects the calibration)."""
    return cosines


def changes(out):
    return [(c.change, c.episode.episode_id) for c in out]


def test_similar_events_join_one_episode_with_summary():
    b = EpisodeBuilder(raw_cosine, RULES)
    p = person(1)
    out = b.add(event("e1", 100, p, quality=0.4), now=0)
    assert changes(out) == [("open", "ep:e1")]
    b.add(event("e2", 105, near(p, 0.8, 1), quality=0.9, camera="cam2"), now=0)
    out = b.add(event("e3", 110, near(p, 0.7, 2), quality=0.6, dossier="d1", watch_lists=("wl1",), confidence=0.9),
                now=0)
    assert changes(out) == [("update", "ep:e1")]
    ep = out[0].episode
    assert ep.event_count == 3
    assert ep.first_event.event_id == "e1" and ep.last_event.event_id == "e3"
    assert ep.best_event.event_id == "e2"
    assert ep.matched and ep.dossier_id == "d1" and ep.matched_event.event_id == "e3"
    assert ep.camera_ids == ["cam1", "cam2"] and ep.watch_list_ids == ["wl1"]
    assert (ep.opened_at, ep.last_at) == (100, 110)
    assert out[0].event_ids == ["e3"]


def test_dissimilar_face_opens_its_own_episode():
    b = EpisodeBuilder(raw_cosine, RULES)
    b.add(event("a1", 0, person(1)), now=0)
    out = b.add(event("b1", 1, person(2)), now=0)
    assert changes(out) == [("open", "ep:b1")]
    assert changes(b.add(event("a2", 2, near(person(1), 0.65, 1)), now=0)) == [("update", "ep:a1")]
    assert changes(b.add(event("a3", 3, near(person(1), 0.55, 2)), now=0)) == [("open", "ep:a3")]


def test_joins_most_similar_episode():
    b = EpisodeBuilder(raw_cosine, RULES)
    p = person(1)
    b.add(event("a", 0, p), now=0)
    q = near(p, 0.62, 5)  # a second face, similar enough to p to pass the threshold
    b.add(event("b", 0, person(3)), now=0)
    b.add(event("c", 1, q), now=0)  # joins a
    out = b.add(event("d", 2, near(q, 0.99, 6)), now=0)
    assert changes(out) == [("update", "ep:a")]


def test_matched_dossier_rules():
    b = EpisodeBuilder(raw_cosine, RULES)
    p = person(1)
    b.add(event("a", 0, p, dossier="d1", confidence=0.9), now=0)
    # same face, matched to another dossier: never joins
    assert changes(b.add(event("b", 1, p, dossier="d2", confidence=0.8), now=0)) == [("open", "ep:b")]
    # same dossier, dissimilar descriptor: joins by dossier
    assert changes(b.add(event("c", 2, person(9), dossier="d1", confidence=0.8), now=0)) == [("update", "ep:a")]


def test_event_timeout_closes_on_event_time():
    b = EpisodeBuilder(raw_cosine, RULES)
    p = person(1)
    b.add(event("a", 0, p), now=0)
    b.add(event("a2", 29, p), now=0)
    out = b.add(event("x", 59.5, person(2)), now=0)  # 30.5 s after a2: a closes, x opens
    assert changes(out) == [("close", "ep:a"), ("open", "ep:x")]
    assert out[0].episode.close_reason == "timeout" and out[0].episode.closed
    out = b.add(event("a3", 60, p), now=0)
    assert changes(out) == [("open", "ep:a3")]


def test_max_duration_closes_and_continues():
    b = EpisodeBuilder(raw_cosine, RULES)
    p = person(1)
    for i in range(0, 300, 20):
        b.add(event(f"e{i}", i, p), now=0)
    out = b.add(event("e300", 300, p), now=0)
    assert changes(out) == [("close", "ep:e0"), ("open", "ep:e300")]
    assert out[0].episode.close_reason == "max_duration" and out[0].episode.event_count == 15


def test_tick_closes_live_episodes_by_wall_clock():
    b = EpisodeBuilder(raw_cosine, RULES)
    b.add(event("a", 1000, person(1)), now=5000)
    assert b.tick(5029) == []
    out = b.tick(5031)
    assert changes(out) == [("close", "ep:a")] and out[0].episode.close_reason == "timeout"


def test_offline_episodes_close_at_stream_end_or_when_idle():
    b = EpisodeBuilder(raw_cosine, RULES)
    b.add(event("a", 0, person(1), video_id="v1"), now=10)
    b.add(event("b", 0, person(2), video_id="v2"), now=10)
    b.add(event("c", 0, person(1)), now=10)  # live, other scope: not joined with a
    assert len(b.open_episodes) == 3
    # the wall clock times out the live episode but not an offline file's ...
    assert changes(b.tick(100)) == [("close", "ep:c")]
    assert changes(b.end_stream("v1")) == [("close", "ep:a")]
    out = b.tick(131)  # ... until it has been idle for video_idle_s
    assert changes(out) == [("close", "ep:b")] and out[0].episode.close_reason == "idle"


def test_scopes_are_separate():
    b = EpisodeBuilder(raw_cosine, RULES)
    b.add(event("a", 0, person(1), group="g1"), now=0)
    assert changes(b.add(event("b", 1, person(1), group="g2"), now=0)) == [("open", "ep:b")]


def test_state_records_restore_the_same_builder():
    """A builder restored from drained records continues exactly like the original."""
    events = [event(f"e{i}", i * 5.0, near(person(i % 3), 0.9, i)) for i in range(30)]
    ref = EpisodeBuilder(raw_cosine, RULES)
    ref_out = [c for e in events for c in ref.add(e, now=0)]

    first = EpisodeBuilder(raw_cosine, RULES)
    log = []
    for e in events[:17]:
        first.add(e, now=0)
        log.extend(first.drain_changes())
    second = EpisodeBuilder(raw_cosine, RULES)
    for record in log:
        second.restore(record, now=0)
    out = [c for e in events[17:] for c in second.add(e, now=0)]
    tail = ref_out[-len(out):]
    assert [(c.change, c.episode) for c in out] == [(c.change, c.episode) for c in tail]
    assert sorted(e.episode_id for e in second.open_episodes) == sorted(e.episode_id for e in ref.open_episodes)


def test_duplicate_events_are_ignored_even_after_a_partial_restore():
    b = EpisodeBuilder(raw_cosine, RULES)
    p = person(1)
    b.add(event("a", 0, p), now=0)
    assert b.add(event("a", 0, p), now=0) == []
    b.add(event("a2", 1, p), now=0)
    records = b.drain_changes()
    restored = EpisodeBuilder(raw_cosine, RULES)
    for r in records:
        restored.restore(r, now=0)
    assert restored.add(event("a2", 1, p), now=0) == []  # already in the restored episode
    out = restored.add(event("a3", 2, p), now=0)
    assert changes(out) == [("update", "ep:a")] and out[0].episode.event_count == 3


def test_drain_reports_closed_markers():
    b = EpisodeBuilder(raw_cosine, RULES)
    b.add(event("a", 0, person(1)), now=0)
    b.add(event("x", 100, person(2)), now=0)
    records = b.drain_changes()
    by_id = {r.episode.episode_id: r for r in records}
    assert by_id["ep:a"].episode.closed and by_id["ep:a"].descriptors == [] and by_id["ep:a"].event_ids == ["a"]
    assert not by_id["ep:x"].episode.closed and len(by_id["ep:x"].descriptors) == 1
    assert b.drain_changes() == []
