"""Deduplication rules (agents/dedup.py), with the real cosine -> confidence calibration."""

from __future__ import annotations

from agents.dedup import Deduplicator, DedupRules
from models.faces import confidences
from tests.unit.notify_helpers import event, near, person

RULES = DedupRules(window_s=30, threshold=0.5, offline=True, live=False)
SAME = 0.98  # cosine to the first shot of one person (L2 0.2; two such shots: ~0.96, L2 0.28)
OTHER = 0.6  # cosine of two different people (L2 0.89): raw it passes a 0.5 threshold, calibrated it does not


def dedup(rules: DedupRules = RULES) -> Deduplicator:
    return Deduplicator(confidences, rules)


def test_repeated_matches_of_a_dossier_fold_within_the_window():
    d = dedup()
    p = person(1)
    assert d.offer(event("a", 0, p, dossier="d1", video_id="v")).keep
    r = d.offer(event("b", 10, person(5), dossier="d1", video_id="v"))
    assert not r.keep and r.folded_into == "a"
    assert d.offer(event("c", 11, p, dossier="d2", video_id="v")).keep  # another dossier
    assert d.offer(event("e", 30, p, dossier="d1", video_id="v")).keep  # window over


def test_unmatched_kept_only_when_better_quality():
    d = dedup()
    p = person(1)
    assert d.offer(event("a", 0, p, quality=0.5, video_id="v")).keep
    assert not d.offer(event("b", 1, near(p, SAME, 1), quality=0.4, video_id="v")).keep
    assert d.offer(event("c", 2, near(p, SAME, 2), quality=0.7, video_id="v")).keep
    assert d.offer(event("d", 3, near(p, SAME, 3), quality=0.6, video_id="v")).folded_into == "c"
    assert d.offer(event("x", 4, person(2), quality=0.1, video_id="v")).keep  # another person


def test_the_threshold_is_in_confidence_units_not_cosine():
    """Two different unknown people at cosine 0.6 are not folded together by a 0.5 (confidence) threshold."""
    d = dedup()
    p = person(1)
    assert d.offer(event("a", 0, p, quality=0.9, video_id="v")).keep
    assert d.offer(event("b", 1, near(p, OTHER, 1), quality=0.1, video_id="v")).keep


def test_scope_and_mode():
    d = dedup()
    p = person(1)
    assert d.offer(event("a", 0, p, dossier="d1", video_id="v", group="g1")).keep
    assert d.offer(event("b", 1, p, dossier="d1", video_id="v", group="g2")).keep  # other group
    assert d.offer(event("c", 1, p, dossier="d1", video_id="w", group="g1")).keep  # other file
    # live events pass untouched unless live dedup is on
    assert d.offer(event("l1", 0, p, dossier="d1")).keep and d.offer(event("l2", 1, p, dossier="d1")).keep
    live = dedup(DedupRules(live=True))
    assert live.offer(event("l1", 0, p, dossier="d1")).keep and not live.offer(event("l2", 1, p, dossier="d1")).keep


def test_forget_resets_a_scope():
    d = dedup()
    d.offer(event("a", 0, person(1), dossier="d1", video_id="v"))
    d.forget("default", "v")
    assert d.offer(event("b", 1, person(1), dossier="d1", video_id="v")).keep
    d.offer(event("c", 2, person(1), dossier="d1", video_id="w", group="g2"))
    d.forget_video("w")
    assert d.offer(event("e", 3, person(1), dossier="d1", video_id="w", group="g2")).keep
