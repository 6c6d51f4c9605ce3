"""Event deduplication, pure (no broker, no clock of its own).

Per scope (camera group and video id) and window (event time):

- a *matched* event whose dossier already has a kept event less than ``window_s`` older is folded into
  it (dropped; the kept one's ``folded`` count grows);
- an *unmatched* event similar (confidence ``>= threshold``, through the injected ``Similarity``
  calibration, never a raw cosine) to a kept unmatched event less than
  ``window_s`` older is the same person: it is kept only when its quality is higher than the best kept
  one's (which it then replaces as the reference), otherwise folded.

The window starts at the kept event (a person standing in front of a camera yields one event per
window, not one ever). Which events are deduplicated at all: offline files (events with a video id)
when ``offline`` is set (the default), live cameras when ``live`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.ports import Similarity
from pipeline.settings import DedupSettings
from schemas.messages import FaceEvent


@dataclass(frozen=True)
class DedupRules:
    window_s: float = 30.0
    threshold: float = 0.6
    offline: bool = True
    live: bool = False

    @classmethod
    def from_settings(cls, s: DedupSettings) -> DedupRules:
        return cls(window_s=s.window_s, threshold=s.threshold, offline=s.offline, live=s.live)


@dataclass(frozen=True)
class Decision:
    keep: bool
    folded_into: str | None = None  # event id of the kept event this one was folded into


@dataclass
class _Kept:
    event_id: str
    timestamp: float
    dossier_id: str | None
    quality: float
    descriptor: np.ndarray
    folded: int = 0


@dataclass
class Deduplicator:
    similarity: Similarity  # the calibration: ``rules.threshold`` is in confidence units
    rules: DedupRules = field(default_factory=DedupRules)
    _kept: dict[tuple[str, str | None], list[_Kept]] = field(default_factory=dict)

    def applies(self, event: FaceEvent) -> bool:
        return self.rules.offline if event.video_id is not None else self.rules.live

    def offer(self, event: FaceEvent) -> Decision:
        """Decide whether ``event`` is kept; remembers kept events."""
        if not self.applies(event):
            return Decision(True)
        scope = (event.camera_group, event.video_id)
        kept = [k for k in self._kept.get(scope, []) if abs(event.timestamp - k.timestamp) < self.rules.window_s]
        self._kept[scope] = kept
        if event.matched:
            return self._offer_matched(kept, event)
        return self._offer_unmatched(kept, event)

    def forget(self, camera_group: str, video_id: str | None) -> None:
        """Drop the state of a scope (an offline file ended)."""
        self._kept.pop((camera_group, video_id), None)

    def forget_video(self, video_id: str) -> None:
        """Drop the state of every camera group's scope of an offline file (it ended)."""
        for scope in [s for s in self._kept if s[1] == video_id]:
            del self._kept[scope]

    def _offer_matched(self, kept: list[_Kept], event: FaceEvent) -> Decision:
        for k in kept:
            if k.dossier_id is not None and k.dossier_id == event.dossier_id:
                k.folded += 1
                return Decision(False, k.event_id)
        kept.append(_Kept(event.event_id, event.timestamp, event.dossier_id, event.quality, _unit(event)))
        return Decision(True)

    def _offer_unmatched(self, kept: list[_Kept], event: FaceEvent) -> Decision:
        d = _unit(event)
        same = [k for k in kept if k.dossier_id is None
                and float(self.similarity(np.asarray(k.descriptor @ d))) >= self.rules.threshold]
        if not same:
            kept.append(_Kept(event.event_id, event.timestamp, None, event.quality, d))
            return Decision(True)
        best = max(same, key=lambda k: k.quality)
        if event.quality > best.quality:
            best.event_id, best.quality, best.descriptor = event.event_id, event.quality, d
            return Decision(True)
        best.folded += 1
        return Decision(False, best.event_id)


def _unit(event: FaceEvent) -> np.ndarray:
    v = np.asarray(event.descriptor, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
