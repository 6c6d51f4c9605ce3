"""Camera health as the API sees it: the latest ``CameraStatus`` reports of each camera's decoder and detector,
replayed from ``camera-status`` by every API instance; and credentials masked in stream URLs."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from pipeline.kafka import replay_topic
from pipeline.settings import Settings
from schemas.messages import CameraState, CameraStatus
from schemas.topics import CAMERA_STATUS

_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/]*)@")


def mask_url(url: str) -> str:
    """``rtsp://user:secret@host/...`` -> ``rtsp://***:***@host/...``; URLs without credentials unchanged."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***:***@", url, count=1)


@dataclass
class CameraHealthView:
    """The API's view of one camera: its decoder's latest report merged with its detector's."""

    decoder: CameraStatus | None = None
    detector: CameraStatus | None = None

    def apply(self, report: CameraStatus) -> None:
        if report.reporter == "decoder":
            if self.decoder is None or report.timestamp >= self.decoder.timestamp or (
                    report.session > self.decoder.session):
                self.decoder = report
        elif self.detector is None or report.timestamp >= self.detector.timestamp:
            self.detector = report

    def fields(self, active: bool) -> dict[str, object]:
        """The health fields of ``CameraOut``."""
        d, k = self.decoder, self.detector
        drops = {**(d.drops if d else {}), **(k.drops if k else {})}
        status: CameraState = "stopped" if not active else (d.status if d and d.status else "connecting")
        return {
            "status": status,
            "fps": d.fps if d and status == "streaming" else 0.0,
            "frames_decoded": d.frames_decoded if d else 0,
            "frames_dropped": (d.frames_dropped if d else 0) + (k.frames_dropped if k else 0),
            "drops": drops,
            "faces_posted": k.faces_posted if k else 0,
            "last_frame_at": d.last_frame_at if d else None,
            "last_error": d.last_error if d else None,
            "session": d.session if d else 0,
            "reported_at": d.timestamp if d else None,
        }


class CameraHealthTable:
    """camera id -> its latest health reports; kept current by a background replay of ``camera-status``
    (no consumer group: every API instance holds the whole table and can answer for any camera)."""

    def __init__(self) -> None:
        self.views: dict[str, CameraHealthView] = {}
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def apply(self, report: CameraStatus) -> None:
        self.views.setdefault(report.camera_id, CameraHealthView()).apply(report)

    def fields(self, camera_id: str, active: bool) -> dict[str, object]:
        return self.views.get(camera_id, CameraHealthView()).fields(active)

    def latest(self, camera_id: str, reporter: str) -> CameraStatus | None:
        """The camera's latest ``decoder`` or ``detector`` report, whichever process sent it."""
        view = self.views.get(camera_id)
        if view is None:
            return None
        return view.decoder if reporter == "decoder" else view.detector

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self, settings: Settings) -> None:
        """Replay the topic in the background (``wait_ready``: until it first reached the end)."""
        self._task = asyncio.create_task(replay_topic(settings, CAMERA_STATUS, self.apply, self._stop, self._ready,
                                                      table=True),
                                         name="camera-health")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the replay first reached the end of the topic (False: not within ``timeout_s``, or
        never started)."""
        if self._task is None:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self._ready.is_set()

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await self._task
