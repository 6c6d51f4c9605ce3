"""What agents need from the world, as small Protocols and types; ``ops/`` supplies the implementations.

Agents depend on these, never on how they are opened: a unit test drives an agent's ``handle`` with
in-memory fakes of them, and the composition root (``ops/root.py``) passes the real ones (SQL repositories,
the vector store, the media store) as keyword arguments. Media methods are synchronous (call them in an
executor); store methods are coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas.messages import CounterRecord, EpisodeChanged, FaceEvent, GalleryChange, VideoProgress
from schemas.notify import Counter, OutboxItem, QueuedMessage, TelegramRule, Webhook

Similarity = Callable[[np.ndarray], np.ndarray]
"""The one cosine -> confidence calibration: cosine similarities of L2-normalised descriptors (an array of
any shape) -> confidence in [0, 1] that each pair is one person (same shape). Every threshold documented "in
confidence units" (matching, episodes, deduplication) is compared to its output, never to a raw cosine.
The real one is ``models.faces.confidences``."""


class MediaWriter(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...


class MediaReader(Protocol):
    def get(self, key: str) -> bytes:
        """The object's bytes; raises ``KeyError`` when there is none."""
        ...

    def get_file(self, key: str, path: Path) -> None:
        """Write the object to ``path``, streamed (a video is never read whole); ``KeyError`` when absent."""
        ...


class GalleryTable(Protocol):
    """The watch lists' descriptors, replayed from ``gallery-changes`` (``agents.matching.Gallery``)."""

    @property
    def size(self) -> int: ...
    @property
    def dossier_count(self) -> int: ...
    def apply(self, change: GalleryChange) -> None: ...
    def match(self, descriptors: np.ndarray, camera_group: str) -> Sequence[MatchOutcome]:
        """One outcome per row of ``descriptors`` ((N, 128) float32, L2-normalised); thread-safe."""
        ...


class MatchOutcome(Protocol):
    @property
    def matched(self) -> bool: ...
    @property
    def dossier_id(self) -> str | None: ...
    @property
    def dossier_name(self) -> str | None: ...
    @property
    def watch_list_ids(self) -> list[str]: ...
    @property
    def confidence(self) -> float: ...


class EventStore(Protocol):
    async def upsert_many(self, events: Sequence[FaceEvent]) -> None: ...


class EventVectors(Protocol):
    async def upsert_events(self, events: Sequence[FaceEvent]) -> None: ...


class VideoStore(Protocol):
    async def apply_progress(self, p: VideoProgress) -> bool: ...
    async def mark_done(self, ident: str, frames_total: int) -> bool: ...


Retention = Callable[[], Awaitable[object]]
"""One retention pass (purge expired events, vectors, images); run in the background by the store sink."""


class EpisodeStore(Protocol):
    async def save(self, changes: Iterable[EpisodeChanged]) -> None:
        """Upsert the changed episodes and link the events each change added (idempotent)."""
        ...


class CounterStore(Protocol):
    async def list_all(self) -> list[Counter]: ...
    async def save_records(self, records: Iterable[CounterRecord]) -> None: ...
    async def open_records(self, since: float) -> list[CounterRecord]: ...


class WebhookOutbox(Protocol):
    """Webhook definitions and the per-webhook outbox the dispatcher drains."""

    async def list_all(self) -> list[Webhook]: ...
    async def enqueue(self, items: list[OutboxItem], queue_max: int) -> int:
        """Add items (one already there is skipped); returns how many old items overflowed."""
        ...


class TelegramOutbox(Protocol):
    async def list_all(self) -> list[TelegramRule]: ...
    async def enqueue(self, messages: list[QueuedMessage], cooldown_s: float) -> int:
        """Queue the messages whose chat has not heard of that person within the cooldown; returns how many."""
        ...


class Named(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


class NameBook(Protocol):
    """Watch lists or cameras, for captions."""

    async def list_all(self) -> Sequence[Named]: ...


class Clock(Protocol):
    """Monotonic time and sleeping, in seconds (the decoder's pacing and reconnect waits); tests pass a fake
    one that advances when slept on."""

    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...
