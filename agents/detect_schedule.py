"""Detection scheduling: which frames of a camera the detector runs on (``detector.detect_interval_s``).

Pure logic: no broker, no models. Every k-th frame of a camera is detected, k set by the camera's own frame
rate: a frame is detected when at least ``interval_s`` (less ``JITTER`` of it, for capture-clock jitter) has
passed since the camera's last detected frame, so with 0.1 s a 30 fps source is detected one frame in three,
a 25 fps one in three, an 8 fps one on every frame. On the frames between, the tracker carries its faces by
its motion model (``FaceTracker.predict``) and the next detection re-anchors them. A frame is always detected
when the camera has no schedule state (its first frame, a new stream session, after ``forget``: a rebalance,
a stream end) and on a shot cut, so a new scene is never tracked on a prediction from the old one.

Live cameras when the detector falls behind (``LiveLoad``): rather than queue frames, or skip whole frames as
stale (``detector.live_max_age_s``, the backstop), the detector detects fewer of its live cameras' frames. When
the live frames it takes are older than ``detector.live_target_age_s`` (capture to the start of their analysis),
the live cameras' interval grows by ``STEP_S`` (at most every ``UP_EVERY_S``, up to
``detector.live_max_detect_interval_s``); when they are younger than half of it, it shrinks back by a step (at
most every ``DOWN_EVERY_S``: slower, so it does not oscillate). Every camera is still tracked on every frame and
alerts stay current; a new face is found up to one interval later. Offline files are never stretched (their
events stay replay-exact).

Deterministic replays: the detector's clean points (the offsets it may commit up to, see ``agents.detector``)
are taken on detected frames only, and a fresh schedule detects its first frame, so a detector that replays
from a clean point detects exactly the frames the dead one detected (frame timestamps travel with the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

JITTER = 0.1  # fraction of the interval a frame may come early and still be detected
STEP_S = 0.05  # how much the live interval grows or shrinks at once
UP_EVERY_S = 0.5  # at most one step up per this long (the effect of a step shows within a few frames)
DOWN_EVERY_S = 2.0  # at most one step down per this long


@dataclass
class LiveLoad:
    """How much the detector stretches its live cameras' detection interval (``extra_s``) to keep up: fed the
    age of the oldest live frame of each batch as it is taken (``observe``). Pure logic, wall-clock seconds."""

    target_age_s: float = 0.25
    max_extra_s: float = 0.4
    extra_s: float = 0.0
    _changed: float = float("-inf")

    def observe(self, age_s: float, now: float) -> float:
        """Adjust to a batch whose oldest live frame was ``age_s`` old at ``now``; returns ``extra_s``."""
        if age_s > self.target_age_s and self.extra_s < self.max_extra_s and now - self._changed >= UP_EVERY_S:
            self.extra_s, self._changed = round(min(self.max_extra_s, self.extra_s + STEP_S), 3), now
        elif age_s < self.target_age_s / 2 and self.extra_s > 0 and now - self._changed >= DOWN_EVERY_S:
            self.extra_s, self._changed = round(max(0.0, self.extra_s - STEP_S), 3), now
        return self.extra_s


@dataclass
class DetectionSchedule:
    """Per camera: when its last detected frame was. ``interval_s`` 0: every frame."""

    interval_s: float = 0.0
    live_extra_s: float = 0.0  # added to the interval of live streams (session > 0) by ``LiveLoad``
    _last: dict[str, tuple[int, float]] = field(default_factory=dict)  # camera id -> (session, timestamp)

    def due(self, camera_id: str, session: int, timestamp: float, cut: bool) -> bool:
        """Whether the camera's next frame (of stream ``session``, at ``timestamp`` seconds; ``cut``: it
        starts a new shot) is detected. Call once per frame, in the camera's frame order."""
        last = self._last.get(camera_id)
        interval = self.interval_s + (self.live_extra_s if session else 0.0)
        if (last is not None and last[0] == session and not cut
                and timestamp - last[1] < interval * (1 - JITTER)):
            return False
        self._last[camera_id] = (session, timestamp)
        return True

    def forget(self, camera_id: str) -> None:
        """The camera's next frame starts afresh (and is detected)."""
        self._last.pop(camera_id, None)
