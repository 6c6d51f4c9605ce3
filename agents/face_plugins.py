"""Face plug-ins (in the manner of FindFace's face router): the contract, discovery, and the stage running one.

Contract (the template: ``agents.frequent_visitors``; the guide: ``docs/plugins.md``). A plug-in is a module,
or any object, with ``activate(ctx: PluginContext) -> plugin`` (sync or async). The plugin it returns has:

- ``preprocess(face: PluginFace, labels: Mapping[str, str]) -> set[str]``: which extras it wants for this face,
  a subset of ``EXTRAS`` (descriptor, gender, age, emotion, mask, liveness); the empty set means "not
  interested" and ``process`` is not called. ``labels`` are the camera's (``schemas.messages.Labels``).
  Synchronous and quick: it runs on the event loop.
- ``process(face: PluginFace, detection: PluginDetection, event: FaceEvent) -> Iterable[PluginNotice] | None``:
  called with the requested extras filled in ``detection`` (the others are None). An ``async def`` runs on
  the event loop and must not block it; a plain ``def`` runs in a worker thread. The notices it returns
  (``ctx.notice(...)`` builds one) are published on ``plugin-notices`` before the face's offset is committed.
- ``shutdown()`` (optional, sync or async): called once when its stage stops.

Extras come from what the pipeline computed for the face: the track's descriptor and the attribute models
of ``models.attributes``. Liveness, off in the pipeline by default (``models.event_liveness``), is computed on
request: the face is scored in its stored full frame (``FrameLiveness``; the models load on the first such
request), so only the faces a plug-in asks it for pay for it. Any other extra the pipeline did not compute
(its model is not in ``models.attributes``), or a liveness without a stored frame, reaches ``process`` as None
and is counted (``facestream_plugin_extras_missing_total``).

Discovery: ``plugins.enabled`` names the plug-ins; a name is looked up among the ones registered in this
process (``register_face_plugin``), then in the entry-point group ``facestream.face_plugins`` (an entry point
names a module exposing ``activate``, or ``activate`` itself). An unknown name is a ``FacePluginError``.

Isolation: each plug-in runs in its own stage, ``plugin.<name>``, with its own consumer group
(``<prefix>plugin.<name>``) on the events topic, so it neither slows nor stops the pipeline's stages (they
never wait for it; a slow plug-in only lags its own group). A face whose ``preprocess`` or ``process`` raises,
or takes longer than ``plugins.timeout_s``, is dead-lettered with the error (stage ``plugin.<name>``) and
counted (``facestream_plugin_faces_total{outcome="failed"}``, ``facestream_dead_letters_total``); the stage
takes the next face. A plug-in whose ``activate`` raises is restarted with a back-off (the ``plugins`` role,
``ops.root``); the other plug-ins keep running. Delivery is at least once: after a crash a face can reach
``process`` again, with the same ``event_id``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents.detector import decode_jpeg
from agents.ports import MediaReader
from models.faces import FaceModels
from pipeline import metrics
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.attributes import summarise
from schemas.messages import BBox, DeadLetter, FaceEvent, Labels, NoticeValue, PluginNotice
from schemas.topics import DEAD_LETTER, EVENTS, PLUGIN_NOTICES

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "facestream.face_plugins"
EXTRAS = frozenset({"descriptor", "gender", "age", "emotion", "mask", "liveness"})


class FacePluginError(ValueError):
    """An unknown plug-in name, an ``activate`` that returned no plugin, or an extra that does not exist."""


@dataclass(frozen=True)
class PluginFace:
    """The face a plug-in is offered: where and when it was seen. ``bbox`` is (x1, y1, x2, y2) in pixels of
    its frame; ``thumbnail_key`` / ``frame_key`` are media keys (``GET /v1/media/<key>`` through ``ctx.api``)."""

    face_id: str
    event_id: str
    camera_id: str
    camera_group: str
    track_id: int
    timestamp: float  # capture time, UNIX s
    quality: float
    bbox: BBox
    thumbnail_key: str | None
    frame_key: str | None
    video_id: str | None

    @classmethod
    def of(cls, event: FaceEvent) -> PluginFace:
        return cls(face_id=event.face_id, event_id=event.event_id, camera_id=event.camera_id,
                   camera_group=event.camera_group, track_id=event.track_id, timestamp=event.timestamp,
                   quality=event.quality, bbox=event.bbox, thumbnail_key=event.thumbnail_key,
                   frame_key=event.frame_key, video_id=event.video_id)


@dataclass(frozen=True)
class PluginDetection:
    """The extras a plug-in asked for (None: not asked for, or not computed by the pipeline).
    ``descriptor``: (128,) float32, L2-normalised (the track's); ``age`` in years; ``liveness`` 0-1."""

    requested: frozenset[str]
    descriptor: np.ndarray | None = None
    gender: str | None = None
    age: float | None = None
    emotion: str | None = None
    mask: bool | None = None
    liveness: float | None = None


@runtime_checkable
class FacePlugin(Protocol):
    def preprocess(self, face: PluginFace, labels: Mapping[str, str]) -> set[str]: ...
    def process(self, face: PluginFace, detection: PluginDetection, event: FaceEvent) -> Any:
        """``Iterable[PluginNotice] | None``, or an awaitable of it (see the module docstring)."""
        ...


class ApiCalls(Protocol):
    """What ``ctx.api`` offers (``connectors.api_client.ApiClient``): JSON in and out, ``ApiClientError``."""

    async def get(self, path: str, params: dict[str, str | int | float] | None = None) -> Any: ...
    async def post(self, path: str, json: Any = None) -> Any: ...
    async def patch(self, path: str, json: Any = None) -> Any: ...
    async def delete(self, path: str) -> Any: ...


@dataclass
class PluginContext:
    """What ``activate`` gets. ``options`` are ``plugins.options[name]`` (validate them with your own
    config); ``api`` is an async client of facestream's API (``plugins.api_url``, ``plugins.api_token``);
    ``plugins`` holds the other plug-ins activated in this process, by name (filled as they activate)."""

    name: str
    options: Mapping[str, Any]
    api: ApiCalls
    plugins: dict[str, FacePlugin] = field(default_factory=dict)

    def new_id(self) -> str:
        """A fresh unique id (32 hex digits) for things the plug-in creates."""
        return uuid.uuid4().hex

    def notice(self, notice: str, event: FaceEvent, about: str, *, dossier_id: str | None = None,
               data: Mapping[str, NoticeValue] | None = None) -> PluginNotice:
        """A notice about ``event``; its id is ``<plugin>:<notice>:<about>``, so the same thing noticed again
        (a redelivered face) gives the same id."""
        return PluginNotice(notice_id=f"{self.name}:{notice}:{about}", plugin=self.name, notice=notice,
                            event_id=event.event_id, camera_id=event.camera_id, camera_group=event.camera_group,
                            timestamp=event.timestamp, dossier_id=dossier_id, labels=dict(event.labels),
                            data=dict(data or {}))


Activate = Callable[[PluginContext], "FacePlugin | Awaitable[FacePlugin]"]
_REGISTERED: dict[str, Activate] = {}


def register_face_plugin(name: str, activate: Activate) -> None:
    """Add (or replace) a plug-in under ``name`` in this process (tests, embedding applications)."""
    _REGISTERED[name] = activate


def find_face_plugin(name: str) -> Activate:
    """The ``activate`` of the plug-in called ``name`` (registered, then entry points); ``FacePluginError``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    found = [entry for entry in entry_points(group=ENTRY_POINT_GROUP) if entry.name == name]
    if not found:
        known = sorted({*_REGISTERED, *(e.name for e in entry_points(group=ENTRY_POINT_GROUP))})
        raise FacePluginError(f"unknown face plug-in {name!r}; known: {known} (entry-point group "
                              f"{ENTRY_POINT_GROUP!r})")
    target = found[0].load()
    activate = getattr(target, "activate", target)
    if not callable(activate):
        raise FacePluginError(f"face plug-in {name!r}: {found[0].value} has no activate(ctx)")
    return activate  # type: ignore[no-any-return]


async def activate_plugin(activate: Activate, ctx: PluginContext) -> FacePlugin:
    """Call ``activate`` (sync or async) and check what it returned."""
    plugin = activate(ctx)
    if inspect.isawaitable(plugin):
        plugin = await plugin
    if not isinstance(plugin, FacePlugin):
        raise FacePluginError(f"face plug-in {ctx.name!r}: activate returned {type(plugin).__name__}, which has "
                              "no preprocess(face, labels) and process(face, detection, event)")
    return plugin


def detection_for(event: FaceEvent, wanted: set[str]) -> tuple[PluginDetection, set[str]]:
    """The requested extras of an event's face, and the ones the pipeline had not computed."""
    unknown = wanted - EXTRAS
    if unknown:
        raise FacePluginError(f"preprocess asked for unknown extras {sorted(unknown)}; known: {sorted(EXTRAS)}")
    flat = summarise(event.attributes)
    values: dict[str, Any] = {name: getattr(flat, name) for name in wanted - {"descriptor"}}
    if "descriptor" in wanted:
        values["descriptor"] = np.asarray(event.descriptor, np.float32)
    missing = {name for name, value in values.items() if value is None}
    return PluginDetection(requested=frozenset(wanted), **values), missing


LivenessScorer = Callable[[FaceEvent], Awaitable[float | None]]
"""Live probability of an event's face, computed now (None: it cannot be, e.g. no stored frame)."""


class FrameLiveness:
    """Liveness on request: the face scored in its stored full frame (``event.frame_key``, box
    ``event.bbox``) by the liveness model, as the detector does with ``models.event_liveness``. The models and
    the media store are opened on the first call; the scoring runs in a worker thread."""

    def __init__(self, models: Callable[[], Awaitable[FaceModels]],
                 media: Callable[[], Awaitable[MediaReader]]) -> None:
        self._models = models
        self._media = media

    async def __call__(self, event: FaceEvent) -> float | None:
        if event.frame_key is None:
            return None
        models, media = await self._models(), await self._media()
        return await asyncio.to_thread(self._score, models, media, event.frame_key, event.bbox)

    @staticmethod
    def _score(models: FaceModels, media: MediaReader, key: str, bbox: BBox) -> float | None:
        try:
            frame = decode_jpeg(media.get(key))
        except KeyError:
            return None  # purged (store.retention_frames_days) or never stored
        return float(models.liveness([(frame, bbox)])[0])


class FacePluginAgent(AgentBase):
    """Runs one plug-in over the events topic (stage ``plugin.<name>``, its own consumer group).
    ``liveness`` computes a requested liveness the pipeline did not (None: such requests get None)."""

    inputs = (EVENTS,)

    def __init__(self, *, settings: Settings, activate: Activate, ctx: PluginContext,
                 liveness: LivenessScorer | None = None) -> None:
        self.name = f"plugin.{ctx.name}"
        self.settings = settings
        self.ctx = ctx
        self._activate = activate
        self._liveness = liveness
        self.plugin: FacePlugin | None = None

    async def start(self) -> None:
        self.plugin = await activate_plugin(self._activate, self.ctx)
        self.ctx.plugins[self.ctx.name] = self.plugin
        log.info("face plug-in %s activated", self.ctx.name)

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        outputs: list[Output] = []
        for item in batch:
            if isinstance(item.message, FaceEvent):
                outputs.extend(await self._one(item, item.message))
        return outputs

    async def _one(self, item: Incoming, event: FaceEvent) -> list[Output]:
        """The notices of one face, or its dead letter (the error is the face's, never the stage's)."""
        plugin_name = self.ctx.name
        started = time.perf_counter()
        try:
            notices = await asyncio.wait_for(self._offer(event), timeout=self.settings.plugins.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a plug-in's failure is dead-lettered with its reason
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"TimeoutError: took longer than plugins.timeout_s ({self.settings.plugins.timeout_s} s)"
            log.warning("face plug-in %s failed on %s: %s", plugin_name, event.event_id, reason)
            metrics.PLUGIN_FACES.labels(plugin_name, "failed").inc()
            metrics.ERRORS.labels(self.name).inc()
            return [Output(DEAD_LETTER, self.name, DeadLetter(
                stage=self.name, topic=item.topic.name, partition=item.partition, offset=item.offset,
                key=item.key, reason=reason[:2000], payload=item.topic.encode(event)))]
        metrics.HANDLE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        if notices is None:
            metrics.PLUGIN_FACES.labels(plugin_name, "skipped").inc()
            return []
        metrics.PLUGIN_FACES.labels(plugin_name, "processed").inc()
        return [Output(PLUGIN_NOTICES, plugin_name, n) for n in notices]

    async def _offer(self, event: FaceEvent) -> list[PluginNotice] | None:
        """preprocess, then process with the requested extras; None when the plug-in wanted nothing."""
        assert self.plugin is not None, "started"
        face = PluginFace.of(event)
        labels: Labels = dict(event.labels)
        wanted = set(self.plugin.preprocess(face, labels) or ())
        if not wanted:
            return None
        detection, missing = detection_for(event, wanted)
        if "liveness" in missing and self._liveness is not None:
            live = await self._liveness(event)
            if live is not None:
                detection = dataclasses.replace(detection, liveness=live)
                missing.discard("liveness")
        for extra in missing:
            metrics.PLUGIN_EXTRAS_MISSING.labels(self.ctx.name, extra).inc()
        if inspect.iscoroutinefunction(self.plugin.process):
            result = await self.plugin.process(face, detection, event)
        else:  # a plain function may block: never on the event loop
            result = await asyncio.to_thread(self.plugin.process, face, detection, event)
            if inspect.isawaitable(result):
                result = await result
        notices = list(result or ())
        for notice in notices:
            if not isinstance(notice, PluginNotice):
                raise FacePluginError(f"process returned a {type(notice).__name__}, not a PluginNotice "
                                      "(build them with ctx.notice)")
        return notices

    async def stop(self) -> None:
        plugin, self.plugin = self.plugin, None
        self.ctx.plugins.pop(self.ctx.name, None)
        shutdown = getattr(plugin, "shutdown", None)
        if shutdown is None:
            return
        try:
            result = shutdown()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("face plug-in %s: shutdown failed", self.ctx.name)


def plugin_names(settings: Settings) -> list[str]:
    """The enabled plug-ins, in order, each once."""
    return list(dict.fromkeys(settings.plugins.enabled))


def check_enabled(settings: Settings) -> dict[str, Activate]:
    """Each enabled plug-in's ``activate``; ``FacePluginError`` names an unknown one."""
    return {name: find_face_plugin(name) for name in plugin_names(settings)}


def notices_of(outputs: Iterable[Output]) -> list[PluginNotice]:
    """The notices among a stage's outputs (tests, tools)."""
    return [o.message for o in outputs if isinstance(o.message, PluginNotice)]
