"""Camera health: what a decoder knows about one live source, the reconnect back-off, URL masking.

Pure logic, no broker. The decoder owns one ``StreamHealth`` per camera it decodes and reports it as a
``CameraStatus`` (topic ``camera-status``); ``connectors.camera_health`` is what an API instance builds from
those reports.

States: ``connecting`` (first open of the camera on this decoder), ``streaming`` (frames flowing),
``reconnecting`` (the source failed or ended; another open is due), ``failed`` (``decoder.failed_after``
consecutive opens failed, or at once when the URL policy refuses the source; it keeps retrying at the capped
back-off), ``stopped`` (inactive or deleted).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from connectors.camera_health import mask_url
from schemas.messages import CameraState, CameraStatus

__all__ = ["StreamHealth", "mask_url", "reconnect_delay"]

def reconnect_delay(failures: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the next open after ``failures`` consecutive failures (0: the source just ended):
    exponential from ``base_s``, capped at ``cap_s``, with jitter in [50 %, 100 %] so cameras that failed
    together (a switch reboot) do not reconnect in lock-step."""
    nominal = min(cap_s, base_s * (2 ** max(0, failures - 1)))
    return float(nominal * (rng or random).uniform(0.5, 1.0))


@dataclass
class StreamHealth:
    """Mutable health of one live camera on its decoder (single asyncio task writes it)."""

    camera_id: str
    failed_after: int
    status: CameraState = "connecting"
    session: int = 0
    failures: int = 0  # consecutive failed opens
    frames_decoded: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    last_frame_at: float | None = None
    last_error: str | None = None
    _fps_mark: tuple[float, int] = field(default_factory=lambda: (time.monotonic(), 0))
    fps: float = 0.0

    def resume(self, previous: CameraStatus | None) -> StreamHealth:
        """Carry the counters (frames decoded, drops by reason, last frame) on from the camera's previous
        report, this process's before a reopen or the one its former owner last published, so they count
        for the camera, not for the process that happens to decode it."""
        if previous is not None:
            self.frames_decoded = previous.frames_decoded
            self.drops = Counter(previous.drops)
            self.last_frame_at = previous.last_frame_at
            self._fps_mark = (time.monotonic(), self.frames_decoded)
        return self

    def opened(self, session: int) -> None:
        self.session = session
        self.status = "streaming"

    def open_failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        self.status = "failed" if self.failures >= self.failed_after else "reconnecting"

    def refused(self, error: str) -> None:
        """The URL policy refused the source: ``failed`` at once (no retry can succeed until it changes)."""
        self.failures = max(self.failures + 1, self.failed_after)
        self.last_error = error
        self.status = "failed"

    def ended(self, error: str | None) -> None:
        """The source stopped giving frames (end of a file camera, a read timeout, a dropped stream)."""
        if self.frames_decoded:
            self.failures = 0
        if error:
            self.last_error = error
        self.status = "reconnecting"

    def decoded(self, captured_at: float) -> None:
        self.frames_decoded += 1
        self.last_frame_at = captured_at
        self.failures = 0

    def dropped(self, reason: str) -> None:
        self.drops[reason] += 1

    def report(self, client_id: str, now: float | None = None) -> CameraStatus:
        """A ``CameraStatus`` for now; fps is measured since the previous report."""
        mark_t, mark_n = self._fps_mark
        t = time.monotonic()
        if t - mark_t >= 0.5:
            self.fps = round((self.frames_decoded - mark_n) / (t - mark_t), 2)
            self._fps_mark = (t, self.frames_decoded)
        if self.status != "streaming":
            self.fps = 0.0
        return CameraStatus(
            camera_id=self.camera_id, reporter="decoder", client_id=client_id,
            timestamp=time.time() if now is None else now, status=self.status, session=self.session,
            fps=self.fps, frames_decoded=self.frames_decoded, frames_dropped=sum(self.drops.values()),
            drops=dict(self.drops), last_frame_at=self.last_frame_at, last_error=self.last_error)
