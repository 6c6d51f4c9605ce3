"""Counter windows (agents/counting.py)."""

from __future__ import annotations

from agents.counting import Counting
from schemas.notify import Counter
from tests.unit.notify_helpers import event, person

P = person(1)


def make() -> Counting:
    c = Counting(lateness_s=5, keep_windows=3)
    c.set_counters([
        Counter(counter_id="c1", camera_ids=["cam1"], interval_s=60),
        Counter(counter_id="g", camera_groups=["lobby"], interval_s=10),
        Counter(counter_id="off", camera_ids=["cam1"], active=False),
    ])
    return c


def test_counts_per_window_and_counter():
    c = make()
    c.add(event("a", 0, P), now=0)
    c.add(event("b", 30, P, dossier="d"), now=0)
    c.add(event("x", 31, P, camera="cam9"), now=0)  # no counter covers it
    c.add(event("l", 12, P, camera="cam7", group="lobby"), now=0)
    recs = {(r.counter_id, r.start): r for r in c.updates(now=0)}
    assert set(recs) == {("c1", 0), ("g", 10)}
    assert (recs[("c1", 0)].faces, recs[("c1", 0)].matched, recs[("c1", 0)].unmatched) == (2, 1, 1)
    assert recs[("g", 10)].camera_ids == ["cam7"] and not recs[("g", 10)].final
    assert c.updates(now=0) == []  # nothing new


def test_windows_become_final_by_event_time_then_wall_clock():
    c = make()
    c.add(event("a", 5, P), now=100)
    c.updates(now=100)
    c.add(event("b", 65, P), now=100)  # event time 65 = end 60 + lateness 5: window 0 final
    recs = c.updates(now=100)
    assert [(r.start, r.faces, r.final) for r in recs] == [(60, 1, False), (0, 1, True)]
    assert c.updates(now=159) == []
    recs = c.updates(now=160)  # wall clock: 65 + 60 s of silence >= 120 + 5
    assert [(r.start, r.final) for r in recs] == [(60, True)]


def test_late_event_updates_a_final_window():
    c = make()
    c.add(event("a", 5, P), now=0)
    c.add(event("b", 70, P), now=0)
    c.updates(now=0)
    c.add(event("late", 6, P), now=0)
    recs = c.updates(now=0)
    assert [(r.start, r.faces, r.final) for r in recs] == [(0, 2, True)]


def test_seed_resumes_a_window():
    c = make()
    c.add(event("a", 5, P), now=0)
    rec = c.updates(now=0)[0]
    d = make()
    d.seed(rec)
    d.add(event("b", 6, P), now=0)
    assert d.updates(now=0)[0].faces == 2
