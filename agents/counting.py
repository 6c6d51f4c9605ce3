"""Counters, pure: faces per counter per tumbling window of event time.

A counter covers cameras (``camera_ids``) and/or camera groups (``camera_groups``); an event counts for
every active counter covering its camera or its group. Windows are aligned on the epoch:
``start = floor(t / interval) * interval``, ``end = start + interval``.

Publishing. :meth:`Counting.updates` returns the current (non-final) record of every window changed since
the last call, so a reader sees counts grow; a window becomes *final* (and is returned once more with
``final=True``) when the counter's effective time passes ``end + lateness_s``. The effective time is
the latest event timestamp seen by the counter plus the wall time since that event arrived (so a quiet
live camera's windows still close). Final windows are kept for ``keep_windows`` intervals, so a late event
updates the right count instead of starting a window from zero (records are upserts by
``(counter_id, start)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas.messages import CounterRecord, FaceEvent
from schemas.notify import Counter


@dataclass
class _Window:
    start: float
    end: float
    faces: int = 0
    matched: int = 0
    unmatched: int = 0
    cameras: set[str] = field(default_factory=set)
    final: bool = False

    def record(self, counter_id: str) -> CounterRecord:
        return CounterRecord(counter_id=counter_id, start=self.start, end=self.end, faces=self.faces,
                             matched=self.matched, unmatched=self.unmatched,
                             camera_ids=sorted(self.cameras), final=self.final)


@dataclass
class _State:
    counter: Counter
    windows: dict[float, _Window] = field(default_factory=dict)
    watermark: float = -math.inf
    arrival: float = 0.0


@dataclass
class Counting:
    lateness_s: float = 5.0
    keep_windows: int = 10
    _states: dict[str, _State] = field(default_factory=dict)
    _dirty: dict[tuple[str, float], None] = field(default_factory=dict)

    def set_counters(self, counters: list[Counter]) -> None:
        """Replace the counter definitions (kept windows survive for unchanged intervals)."""
        states = {}
        for c in counters:
            if not c.active:
                continue
            old = self._states.get(c.counter_id)
            if old is not None and old.counter.interval_s == c.interval_s:
                old.counter = c
                states[c.counter_id] = old
            else:
                states[c.counter_id] = _State(c)
        self._states = states

    def seed(self, record: CounterRecord) -> None:
        """Resume a window from a stored record (after a restart)."""
        state = self._states.get(record.counter_id)
        if state is None:
            return
        state.windows[record.start] = _Window(record.start, record.end, record.faces, record.matched,
                                              record.unmatched, set(record.camera_ids), record.final)
        state.watermark = max(state.watermark, record.end if record.final else record.start)

    def add(self, event: FaceEvent, now: float) -> None:
        """Count one event in every counter covering it (``now``: wall clock at arrival)."""
        for state in self._states.values():
            c = state.counter
            if event.camera_id not in c.camera_ids and event.camera_group not in c.camera_groups:
                continue
            start = math.floor(event.timestamp / c.interval_s) * c.interval_s
            w = state.windows.get(start)
            if w is None:
                w = state.windows[start] = _Window(start, start + c.interval_s)
            w.faces += 1
            if event.matched:
                w.matched += 1
            else:
                w.unmatched += 1
            w.cameras.add(event.camera_id)
            state.watermark = max(state.watermark, event.timestamp)
            state.arrival = now
            self._dirty[(c.counter_id, start)] = None

    def updates(self, now: float) -> list[CounterRecord]:
        """Records of windows changed since the last call, then windows that became final."""
        out = []
        finals = self._finalise(now)
        for counter_id, start in self._dirty:
            state = self._states.get(counter_id)
            w = state.windows.get(start) if state else None
            if w is not None and (counter_id, start) not in finals:
                out.append(w.record(counter_id))
        self._dirty.clear()
        out.extend(self._states[cid].windows[s].record(cid) for cid, s in finals)
        return out

    def _finalise(self, now: float) -> dict[tuple[str, float], None]:
        finals: dict[tuple[str, float], None] = {}
        for counter_id, state in self._states.items():
            if state.watermark == -math.inf:
                continue
            effective = state.watermark + max(0.0, now - state.arrival)
            for start, w in list(state.windows.items()):
                if effective >= w.end + self.lateness_s:
                    if not w.final or (counter_id, start) in self._dirty:
                        w.final = True
                        finals[(counter_id, start)] = None
                    if effective >= w.end + self.keep_windows * state.counter.interval_s:
                        del state.windows[start]
        return finals
