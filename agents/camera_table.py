"""Camera settings as a table replayed from the cameras changelog (what the detector applies per camera)."""

from __future__ import annotations

import asyncio
import contextlib

from agents.camera_health import CameraHealthView
from pipeline.kafka import replay_topic
from pipeline.settings import Settings
from schemas.messages import CameraChanged, CameraStatus
from schemas.topics import CAMERA_STATUS, CAMERAS


class CameraTable:
    """camera id -> latest ``CameraChanged``; kept current by a background replay of the cameras topic."""

    def __init__(self) -> None:
        self.cameras: dict[str, CameraChanged] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def apply(self, change: CameraChanged) -> None:
        if change.deleted:
            self.cameras.pop(change.camera_id, None)
        else:
            self.cameras[change.camera_id] = change

    def get(self, camera_id: str) -> CameraChanged | None:
        return self.cameras.get(camera_id)

    async def start(self, settings: Settings) -> None:
        caught_up = asyncio.Event()
        self._task = asyncio.create_task(replay_topic(settings, CAMERAS, self.apply, self._stop, caught_up))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(caught_up.wait(), 10)

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await self._task


class CameraHealthTable:
    """camera id -> its latest health reports; kept current by a background replay of ``camera-status``
    (no consumer group: every API instance holds the whole table and can answer for any camera)."""

    def __init__(self) -> None:
        self.views: dict[str, CameraHealthView] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def apply(self, report: CameraStatus) -> None:
        self.views.setdefault(report.camera_id, CameraHealthView()).apply(report)

    def fields(self, camera_id: str, active: bool) -> dict[str, object]:
        return self.views.get(camera_id, CameraHealthView()).fields(active)

    def start(self, settings: Settings) -> None:
        self._task = asyncio.create_task(replay_topic(settings, CAMERA_STATUS, self.apply, self._stop),
                                         name="camera-health")

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await self._task
