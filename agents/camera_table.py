"""Camera settings as a table replayed from the cameras changelog (what the detector applies per camera)."""

from __future__ import annotations

import asyncio
import contextlib

from pipeline.kafka import replay_topic
from pipeline.settings import Settings
from schemas.messages import CameraChanged
from schemas.topics import CAMERAS


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
        self._task = asyncio.create_task(replay_topic(settings, CAMERAS, self.apply, self._stop, caught_up,
                                                              table=True))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(caught_up.wait(), 10)

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await self._task
