"""Episodes (FindFace semantics), as a pure state machine: no broker, no clock of its own, no I/O.

An *episode* gathers the face events of one person close in time. Rules, per *scope* (camera group and
video id: events of different groups, or of different offline files, never share an episode):

1. An event joins the open episode of the same person: one whose last event is at most
   ``search_interval_s`` older than it and which is similar enough: the best confidence between the
   event's descriptor and the episode's reference descriptors (its first, best-quality and last event) is
   ``>= threshold`` (confidence units, see ``to_confidence``). A matched event joins an open episode
   matched to the same dossier at once, and never one matched to another dossier. When several
   episodes qualify it joins the most similar one.
2. Otherwise it opens a new episode, id ``"ep:" + event_id`` (deterministic: a replay makes the same ids).
3. An episode closes ``max_duration_s`` after its first event (an event of the same person after that
   opens a continuation episode), or ``event_timeout_s`` after its last event without a new one.

Time. Rules run on *event time*: each scope has a watermark, the latest event timestamp seen, and
time-outs fire when the watermark passes them. Offline files replay faster than real time, so the wall
clock means nothing for them; live cameras, though, may go quiet, and then no new event moves the
watermark. So :meth:`EpisodeBuilder.tick` closes episodes with the wall clock as follows:

- live scope (no video id): the effective time is ``watermark + (now - arrival of the last event)``,
  i.e. event time keeps running at wall-clock speed while the camera is silent;
- offline scope: its episodes close ("idle") once no event arrived for ``video_idle_s`` of wall time
  (normally the end-of-stream marker closes them first, see :meth:`EpisodeBuilder.end_stream`).

State. :meth:`EpisodeBuilder.drain_changes` lists the state records of the episodes changed since the
last call (open ones with their reference descriptors and event ids, closed ones as a closed marker with
their event ids); :meth:`EpisodeBuilder.restore` rebuilds the builder from those records replayed in
order. Duplicates: an event id already taken (live, or in a restored record; the last ``seen_max`` ids
are remembered) is ignored, so a redelivered batch after a restart, or an upstream duplicate, changes
nothing, even when the crash left only some of a batch's state records written.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from agents.ports import Similarity
from pipeline.settings import EpisodeSettings
from schemas.attributes import summarise
from schemas.messages import Episode, EpisodeChanged, EpisodeStateRecord, EventRef, FaceEvent

Scope = tuple[str, str | None]  # (camera group, video id)


@dataclass(frozen=True)
class EpisodeRules:
    """Thresholds and durations; seconds of event time (``video_idle_s`` is wall time)."""

    threshold: float = 0.6
    search_interval_s: float = 60.0
    max_duration_s: float = 300.0
    event_timeout_s: float = 30.0
    video_idle_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: EpisodeSettings) -> EpisodeRules:
        return cls(
            threshold=settings.threshold,
            search_interval_s=settings.search_interval_s,
            max_duration_s=settings.max_duration_s,
            event_timeout_s=settings.event_timeout_s,
            video_idle_s=settings.video_idle_s,
        )


def event_ref(event: FaceEvent) -> EventRef:
    """The summary of an event that an episode keeps."""
    return EventRef(
        event_id=event.event_id,
        face_id=event.face_id,
        camera_id=event.camera_id,
        timestamp=event.timestamp,
        quality=event.quality,
        matched=event.matched,
        confidence=event.confidence,
        dossier_id=event.dossier_id,
        thumbnail_key=event.thumbnail_key,
        **summarise(event.attributes).fields(),
    )


@dataclass
class _Open:
    episode: Episode
    descriptors: np.ndarray  # (k<=3, 128) float32, normalised: first, best-quality, last event's
    event_ids: list[str]


@dataclass
class _ScopeClock:
    watermark: float  # latest event timestamp seen (event time)
    arrival: float  # wall clock when the latest event arrived


@dataclass
class EpisodeBuilder:
    """Feeds events in, returns :class:`EpisodeChanged` records. Not thread-safe; no await inside."""

    to_confidence: Similarity  # the calibration: ``rules.threshold`` is in confidence units
    rules: EpisodeRules = field(default_factory=EpisodeRules)
    _open: dict[str, _Open] = field(default_factory=dict)
    _clocks: dict[Scope, _ScopeClock] = field(default_factory=dict)
    _changed: dict[str, bool] = field(default_factory=dict)  # episode id -> still open
    _closed: dict[str, tuple[Episode, list[str]]] = field(default_factory=dict)  # closed since the last drain
    seen_max: int = 200_000
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    # -- public API -------------------------------------------------------------------------------

    @property
    def open_episodes(self) -> list[Episode]:
        return [o.episode for o in self._open.values()]

    def add(self, event: FaceEvent, now: float) -> list[EpisodeChanged]:
        """Take one event (``now``: wall clock at arrival, seconds). Returns the closes it caused,
        then the open or update of the episode it joined; nothing for an event id already taken."""
        if event.event_id in self._seen:
            return []
        self._remember([event.event_id])
        scope = _scope_of(event.camera_group, event.video_id)
        clock = self._clocks.setdefault(scope, _ScopeClock(event.timestamp, now))
        clock.watermark = max(clock.watermark, event.timestamp)
        clock.arrival = now
        out = self._expire(scope, clock.watermark)
        descriptor = _normalised(event.descriptor)
        target = self._choose(scope, event, descriptor)
        if target is not None and event.timestamp - target.episode.opened_at >= self.rules.max_duration_s:
            out.append(self._close(target.episode.episode_id, "max_duration"))
            target = None
        if target is None:
            out.append(self._open_new(scope, event, descriptor))
        else:
            out.append(self._join(target, event, descriptor))
        return out

    def end_stream(self, video_id: str) -> list[EpisodeChanged]:
        """An offline file ended: close every open episode of it (in any camera group)."""
        ids = [i for i, o in self._open.items() if o.episode.video_id == video_id]
        for scope in [sc for sc in self._clocks if sc[1] == video_id]:
            del self._clocks[scope]
        return [self._close(i, "stream_end") for i in ids]

    def tick(self, now: float) -> list[EpisodeChanged]:
        """Wall-clock time-outs (see the module docstring)."""
        out: list[EpisodeChanged] = []
        for scope, clock in list(self._clocks.items()):
            silent = max(0.0, now - clock.arrival)
            if scope[1] is None:
                out.extend(self._expire(scope, clock.watermark + silent))
            elif silent >= self.rules.video_idle_s:
                ids = [i for i, o in self._open.items() if _scope_of_episode(o.episode) == scope]
                out.extend(self._close(i, "idle") for i in ids)
                del self._clocks[scope]
        return out

    def drain_changes(self) -> list[EpisodeStateRecord]:
        """State records of the episodes changed since the last call, in change order."""
        records = []
        for episode_id, still_open in self._changed.items():
            o = self._open.get(episode_id)
            if still_open and o is not None:
                records.append(EpisodeStateRecord(episode=o.episode, descriptors=o.descriptors.tolist(),
                                                  event_ids=list(o.event_ids)))
            elif not still_open:
                closed, event_ids = self._closed[episode_id]
                records.append(EpisodeStateRecord(episode=closed, event_ids=event_ids))
        self._changed.clear()
        self._closed.clear()
        return records

    def restore(self, record: EpisodeStateRecord, now: float) -> None:
        """Apply one replayed state record (records must come in the order they were written)."""
        episode = record.episode
        self._remember(record.event_ids)
        if episode.closed or not record.descriptors:
            self._open.pop(episode.episode_id, None)
            return
        descriptors = np.asarray(record.descriptors, dtype=np.float32).reshape(-1, 128)
        self._open[episode.episode_id] = _Open(episode, descriptors, list(record.event_ids))
        scope = _scope_of_episode(episode)
        clock = self._clocks.setdefault(scope, _ScopeClock(episode.last_at, now))
        clock.watermark = max(clock.watermark, episode.last_at)
        clock.arrival = now

    # -- rules ------------------------------------------------------------------------------------

    def _expire(self, scope: Scope, at: float) -> list[EpisodeChanged]:
        out = []
        for episode_id, o in list(self._open.items()):
            ep = o.episode
            if _scope_of_episode(ep) != scope:
                continue
            if at - ep.last_at > self.rules.event_timeout_s:
                out.append(self._close(episode_id, "timeout"))
            elif at - ep.opened_at >= self.rules.max_duration_s:
                out.append(self._close(episode_id, "max_duration"))
        return out

    def _choose(self, scope: Scope, event: FaceEvent, descriptor: np.ndarray) -> _Open | None:
        best: _Open | None = None
        best_score = -np.inf
        for o in self._open.values():
            ep = o.episode
            if _scope_of_episode(ep) != scope or event.timestamp - ep.last_at > self.rules.search_interval_s:
                continue
            if event.matched and ep.dossier_id is not None:
                if ep.dossier_id != event.dossier_id:
                    continue
                score = np.inf  # same dossier: the strongest evidence
            else:
                score = float(np.max(self.to_confidence(o.descriptors @ descriptor)))
                if score < self.rules.threshold:
                    continue
            if score > best_score:
                best, best_score = o, score
        return best

    def _open_new(self, scope: Scope, event: FaceEvent, descriptor: np.ndarray) -> EpisodeChanged:
        ref = event_ref(event)
        episode = Episode(
            episode_id=f"ep:{event.event_id}",
            camera_group=scope[0],
            video_id=scope[1],
            opened_at=event.timestamp,
            last_at=event.timestamp,
            event_count=1,
            first_event=ref,
            last_event=ref,
            best_event=ref,
            matched_event=ref if event.matched else None,
            matched=event.matched,
            dossier_id=event.dossier_id if event.matched else None,
            dossier_name=event.dossier_name if event.matched else None,
            camera_ids=[event.camera_id],
            watch_list_ids=sorted(set(event.watch_list_ids)) if event.matched else [],
        )
        self._open[episode.episode_id] = _Open(episode, descriptor[None, :], [event.event_id])
        self._changed[episode.episode_id] = True
        return EpisodeChanged(change="open", episode=episode, event_ids=[event.event_id])

    def _join(self, o: _Open, event: FaceEvent, descriptor: np.ndarray) -> EpisodeChanged:
        ep = o.episode
        ref = event_ref(event)
        is_last = event.timestamp >= ep.last_at
        is_best = event.quality > ep.best_event.quality
        best_match = event.matched and (ep.matched_event is None or event.confidence > ep.matched_event.confidence)
        update: dict[str, object] = {
            "event_count": ep.event_count + 1,
            "last_at": max(ep.last_at, event.timestamp),
            "last_event": ref if is_last else ep.last_event,
            "best_event": ref if is_best else ep.best_event,
            "camera_ids": sorted(set(ep.camera_ids) | {event.camera_id}),
        }
        if event.matched:
            update["watch_list_ids"] = sorted(set(ep.watch_list_ids) | set(event.watch_list_ids))
        if best_match:
            update.update(matched_event=ref, matched=True, dossier_id=event.dossier_id,
                          dossier_name=event.dossier_name)
        o.episode = ep.model_copy(update=update)
        o.descriptors = _references(o, descriptor, is_best, is_last)
        o.event_ids.append(event.event_id)
        self._changed[ep.episode_id] = True
        return EpisodeChanged(change="update", episode=o.episode, event_ids=[event.event_id])

    def _close(self, episode_id: str, reason: str) -> EpisodeChanged:
        o = self._open.pop(episode_id)
        closed = o.episode.model_copy(update={"closed": True, "close_reason": reason})
        self._changed[episode_id] = False
        self._closed[episode_id] = (closed, o.event_ids)
        return EpisodeChanged(change="close", episode=closed)

    def _remember(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self._seen[event_id] = None
            self._seen.move_to_end(event_id)
        while len(self._seen) > self.seen_max:
            self._seen.popitem(last=False)


def _references(o: _Open, descriptor: np.ndarray, is_best: bool, is_last: bool) -> np.ndarray:
    """Reference descriptors after a join: rows are the first, the best-quality and the last event's."""
    rows = o.descriptors
    first = rows[0]
    best = descriptor if is_best else rows[min(1, len(rows) - 1)]
    last = descriptor if is_last else rows[-1]
    return np.stack([first, best, last]).astype(np.float32)


def _normalised(descriptor: list[float]) -> np.ndarray:
    v = np.asarray(descriptor, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _scope_of(camera_group: str, video_id: str | None) -> Scope:
    return (camera_group, video_id)


def _scope_of_episode(ep: Episode) -> Scope:
    return (ep.camera_group, ep.video_id)
