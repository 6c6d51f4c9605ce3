"""Matcher agent: descriptors -> events. Every face gets an event, matched or not (unless ignored).

The gallery is a table replayed from the gallery-changes changelog by every matcher instance (a global
table: each instance needs every watch list), kept current by a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np

from agents.ports import GalleryTable, MatchOutcome
from pipeline import metrics
from pipeline.kafka import replay_topic
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import DescribedFace, FaceEvent, StreamEnd
from schemas.topics import DESCRIPTORS, EVENTS, GALLERY

log = logging.getLogger(__name__)


def to_event(item: DescribedFace, result: MatchOutcome) -> FaceEvent:
    face = item.face
    return FaceEvent(
        event_id=face.face_id, face_id=face.face_id, camera_id=face.camera_id, camera_group=face.camera_group,
        track_id=face.track_id, timestamp=face.timestamp, offset_s=face.offset_s, matched=result.matched,
        dossier_id=result.dossier_id,
        dossier_name=result.dossier_name, watch_list_ids=result.watch_list_ids,
        confidence=round(result.confidence, 6), quality=face.quality, bbox=face.bbox, attributes=item.attributes,
        descriptor=item.descriptor, frame_key=face.frame_key, thumbnail_key=face.thumbnail_key,
        video_id=face.video_id, faces_used=item.faces_used, labels=face.labels,
    )


class MatcherAgent(AgentBase):
    name = "matcher"
    replay_safe = True  # deterministic output ids: commits may be coalesced (pipeline.stage)
    inputs = (DESCRIPTORS,)

    def __init__(self, *, settings: Settings, gallery: GalleryTable) -> None:
        self.settings = settings
        self.gallery = gallery
        self._stop = asyncio.Event()
        self._replay: asyncio.Task[None] | None = None

    async def start(self) -> None:
        caught_up = asyncio.Event()
        self._replay = asyncio.create_task(
            replay_topic(self.settings, GALLERY, self.gallery.apply, self._stop, caught_up, table=True))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(caught_up.wait(), 15)
        log.info("matcher gallery loaded: %d dossiers, %d faces", self.gallery.dossier_count, self.gallery.size)

    async def stop(self) -> None:
        self._stop.set()
        if self._replay:
            with contextlib.suppress(Exception):
                await self._replay

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        faces = [item.message for item in batch if isinstance(item.message, DescribedFace)]
        events = await asyncio.get_running_loop().run_in_executor(None, self._match, faces)
        by_id = {e.face_id: e for e in events}
        outputs = []
        for item in batch:
            msg = item.message
            if isinstance(msg, DescribedFace):
                event = by_id[msg.face.face_id]
                if not event.matched and self.settings.matcher.ignore_unmatched:
                    continue
                metrics.EVENT_LATENCY.labels(self.name).observe(max(0.0, time.time() - event.timestamp))
                outputs.append(Output(EVENTS, event.camera_id, event))
            elif isinstance(msg, StreamEnd):
                outputs.append(Output(EVENTS, msg.camera_id, msg))
        return outputs

    def _match(self, faces: list[DescribedFace]) -> list[FaceEvent]:
        events = []
        by_group: dict[str, list[DescribedFace]] = {}
        for f in faces:
            by_group.setdefault(f.face.camera_group, []).append(f)
        for group, items in by_group.items():
            matrix = np.asarray([i.descriptor for i in items], np.float32)
            events += [to_event(i, r) for i, r in zip(items, self.gallery.match(matrix, group), strict=True)]
        return events

