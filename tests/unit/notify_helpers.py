"""Builders of face events for the episode/dedup/counter/notification tests (helper-4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from pipeline.stage import Incoming
from schemas.messages import FaceEvent
from schemas.topics import EVENTS


def person(seed: int) -> np.ndarray:
    """A random unit 128-D descriptor: distinct seeds are near-orthogonal 'people'."""
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def near(base: np.ndarray, cosine: float, seed: int = 0) -> np.ndarray:
    """A unit vector at exactly ``cosine`` from ``base``."""
    r = np.random.default_rng(10_000 + seed).normal(size=128).astype(np.float32)
    r -= (r @ base) * base
    r /= np.linalg.norm(r)
    v = cosine * base + np.sqrt(max(0.0, 1 - cosine**2)) * r
    return (v / np.linalg.norm(v)).astype(np.float32)


def event(
    event_id: str,
    t: float,
    descriptor: np.ndarray,
    *,
    camera: str = "cam1",
    group: str = "default",
    quality: float = 0.5,
    dossier: str | None = None,
    watch_lists: tuple[str, ...] = (),
    confidence: float = 0.0,
    video_id: str | None = None,
) -> FaceEvent:
    return FaceEvent(
        event_id=event_id,
        face_id=event_id,
        camera_id=camera,
        camera_group=group,
        track_id=1,
        timestamp=t,
        matched=dossier is not None,
        dossier_id=dossier,
        dossier_name=f"name-{dossier}" if dossier else None,
        watch_list_ids=list(watch_lists),
        confidence=confidence if dossier else min(confidence, 0.5),
        quality=quality,
        bbox=(0, 0, 10, 10),
        descriptor=[float(x) for x in descriptor],
        thumbnail_key=f"thumbs/{event_id}.jpg",
        video_id=video_id,
    )


def incoming(events: list[FaceEvent]) -> list[Incoming]:
    """Events as a stage receives them (offsets in order)."""
    return [Incoming(EVENTS, e.camera_id, e, 0, n, 0) for n, e in enumerate(events)]


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def face_attributes(gender: str = "male", age: float = 40.0, mask: bool = False, emotion: str = "neutral"
                    ) -> dict[str, dict[str, float]]:
    """Attribute distributions as the extractor's models write them (``schemas.attributes``)."""
    p_male = 0.9 if gender == "male" else 0.1
    labels = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    return {"gender": {"male": p_male, "female": 1 - p_male}, "age": {"years": age},
            "mask": {"mask": 0.95 if mask else 0.02, "no_mask": 0.03 if mask else 0.97},
            "emotion": {label: (0.7 if label == emotion else 0.05) for label in labels}}
