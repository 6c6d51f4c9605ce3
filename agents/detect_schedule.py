"""Detection scheduling: which frames of a camera the detector runs on (``detector.detect_interval_s``).

Pure logic: no broker, no models. Every k-th frame of a camera is detected, k set by the camera's own frame
rate: a frame is detected when at least ``interval_s`` (less ``JITTER`` of it, for capture-clock jitter) has
passed since the camera's last detected frame, so with 0.1 s a 30 fps source is detected one frame in three,
a 25 fps one in three, an 8 fps one on every frame. On the frames between, the tracker carries its faces by
its motion model (``FaceTracker.predict``) and the next detection re-anchors them. A frame is always detected
when the camera has no schedule state (its first frame, a new stream session, after ``forget``: a rebalance,
a stream end) and on a shot cut, so a new scene is never tracked on a prediction from the old one.

Deterministic replays: the detector's clean points (the offsets it may commit up to, see ``agents.detector``)
are taken on detected frames only, and a fresh schedule detects its first frame, so a detector that replays
from a clean point detects exactly the frames the dead one detected (frame timestamps travel with the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

JITTER = 0.1  # fraction of the interval a frame may come early and still be detected


@dataclass
class DetectionSchedule:
    """Per camera: when its last detected frame was. ``interval_s`` 0: every frame."""

    interval_s: float = 0.0
    _last: dict[str, tuple[int, float]] = field(default_factory=dict)  # camera id -> (session, timestamp)

    def due(self, camera_id: str, session: int, timestamp: float, cut: bool) -> bool:
        """Whether the camera's next frame (of stream ``session``, at ``timestamp`` seconds; ``cut``: it
        starts a new shot) is detected. Call once per frame, in the camera's frame order."""
        last = self._last.get(camera_id)
        if (last is not None and last[0] == session and not cut
                and timestamp - last[1] < self.interval_s * (1 - JITTER)):
            return False
        self._last[camera_id] = (session, timestamp)
        return True

    def forget(self, camera_id: str) -> None:
        """The camera's next frame starts afresh (and is detected)."""
        self._last.pop(camera_id, None)
