"""The example face plug-in, and the template for writing one: frequent visitors.

It counts the visits of each unknown person and, once someone has come on ``min_visits`` different visits
(UTC days by default) within ``window_s``, publishes a ``frequent_visitor`` notice on ``plugin-notices`` and,
when ``watch_list`` is set, enrols the face into the watch list of that name (created through the API if there
is none) through facestream's own API: a new dossier "Frequent visitor <id>", its face taken from the event
(``POST /v1/dossiers/{id}/faces`` with ``{"face": "event:<id>"}``), so the person is recognised from then on.

Enable it with ``FACESTREAM_PLUGINS_ENABLED='["frequent_visitors"]'`` and set its options in
``FACESTREAM_PLUGINS_OPTIONS``, e.g. ``'{"frequent_visitors": {"watch_list": "frequent visitors"}}'``.

How it is built (the parts every plug-in has):
- ``FrequentVisitorsConfig``: its options, a pydantic model with a ``kind`` tag, validated in ``activate``
  (a wrong option fails activation with the model's message).
- ``activate(ctx)``: returns the plugin object.
- ``preprocess(face, labels)``: only faces from cameras carrying every label in ``labels`` (empty: all
  cameras); it asks for the descriptor alone.
- ``process(face, detection, event)`` (async: it calls the API): the person is the remembered visitor whose
  descriptor is most similar (confidence units, ``models.faces.confidences``) at or above ``threshold``, else a
  new visitor. A visit is the ``visit_s`` bucket of the event time, so a redelivered face changes nothing.
- ``shutdown()``: logs what it forgets.

Limits (it is a template): visitors live in memory, so a restart forgets them (a production plug-in keeps them
in a store); at most ``max_visitors`` are remembered (the least recently seen go first). Enrolment retries for up
to ``enrol_wait_s`` (keep it under ``plugins.timeout_s``) while the API does not answer yet or the store sink has
not stored the event yet; a failed enrolment is logged and reported in the notice (``enrolled`` false,
``error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.face_plugins import FacePluginError, PluginContext, PluginDetection, PluginFace
from connectors.api_client import ApiClientError
from models.faces import confidences
from schemas.messages import FaceEvent, PluginNotice

log = logging.getLogger(__name__)

NOTICE = "frequent_visitor"
ENROL_RETRY_S = 0.25


class FrequentVisitorsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["frequent_visitors"] = "frequent_visitors"
    min_visits: int = Field(3, ge=1, description="Visits after which a person is a frequent visitor.")
    visit_s: float = Field(86400.0, gt=0, description="One visit: sightings in the same bucket of this many "
                                                      "seconds (UTC days by default) count once.")
    window_s: float = Field(30 * 86400.0, gt=0, description="Visits older than this (event time) are forgotten.")
    threshold: float = Field(0.5, ge=0, le=1, description="Same person at or above this confidence.")
    only_unmatched: bool = Field(True, description="Count unknown faces only (matched ones are known already).")
    labels: dict[str, str] = Field(default_factory=dict, description="Only cameras with all these labels.")
    watch_list: str | None = Field(None, min_length=1, max_length=256,
                                   description="Enrol frequent visitors into the watch list of this name "
                                               "(created if there is none); unset: notices only.")
    enrol_wait_s: float = Field(5.0, ge=0, description="How long enrolment retries while the API does not answer "
                                                       "yet or the event is not stored yet.")
    max_visitors: int = Field(10_000, ge=1, description="Visitors remembered at most.")


@dataclass
class Visitor:
    visitor_id: str  # the first event's id
    descriptor: np.ndarray  # (128,) float32, unit
    visits: set[int] = field(default_factory=set)  # visit buckets (event time // visit_s)
    first_seen: float = 0.0
    last_seen: float = 0.0
    noticed: bool = False


class FrequentVisitors:
    def __init__(self, ctx: PluginContext, config: FrequentVisitorsConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.visitors: list[Visitor] = []
        self.watch_list_id: str | None = None

    def preprocess(self, face: PluginFace, labels: Mapping[str, str]) -> set[str]:
        if any(labels.get(key) != value for key, value in self.config.labels.items()):
            return set()
        return {"descriptor"}

    async def process(self, face: PluginFace, detection: PluginDetection, event: FaceEvent) -> list[PluginNotice]:
        if (self.config.only_unmatched and event.matched) or detection.descriptor is None:
            return []
        visitor = self.seen(event.event_id, detection.descriptor, face.timestamp)
        if visitor.noticed or len(visitor.visits) < self.config.min_visits:
            return []
        visitor.noticed = True
        dossier_id, error = await self.enrol(visitor, event) if self.config.watch_list else (None, None)
        data: dict[str, str | int | float | bool | None] = {
            "visitor_id": visitor.visitor_id, "visits": len(visitor.visits), "first_seen": visitor.first_seen,
            "last_seen": visitor.last_seen, "enrolled": dossier_id is not None and error is None}
        if error:
            data["error"] = error
        log.info("frequent visitor %s: %d visits", visitor.visitor_id, len(visitor.visits))
        return [self.ctx.notice(NOTICE, event, visitor.visitor_id, dossier_id=dossier_id, data=data)]

    def seen(self, event_id: str, descriptor: np.ndarray, timestamp: float) -> Visitor:
        """Record one sighting (pure: no I/O); returns the visitor it belongs to."""
        cfg = self.config
        self._forget(timestamp)
        unit = descriptor / max(float(np.linalg.norm(descriptor)), 1e-12)
        visitor = None
        if self.visitors:
            scores = confidences(np.stack([v.descriptor for v in self.visitors]) @ unit)
            best = int(np.argmax(scores))
            if scores[best] >= cfg.threshold:
                visitor = self.visitors[best]
        if visitor is None:
            visitor = Visitor(event_id, unit.astype(np.float32), first_seen=timestamp, last_seen=timestamp)
            self.visitors.append(visitor)
            if len(self.visitors) > cfg.max_visitors:
                self.visitors.remove(min(self.visitors, key=lambda v: v.last_seen))
        visitor.visits.add(int(timestamp // cfg.visit_s))
        visitor.first_seen = min(visitor.first_seen, timestamp)
        visitor.last_seen = max(visitor.last_seen, timestamp)
        return visitor

    def _forget(self, now: float) -> None:
        oldest = int((now - self.config.window_s) // self.config.visit_s)
        for v in self.visitors:
            v.visits = {b for b in v.visits if b >= oldest}
        self.visitors = [v for v in self.visitors if v.visits]

    async def enrol(self, visitor: Visitor, event: FaceEvent) -> tuple[str | None, str | None]:
        """(dossier id, None) once enrolled, (None or the dossier id, error) when it failed. Calls that fail for
        a reason that passes (the API not answering yet, 502-504, the event not stored yet) are retried for up
        to ``enrol_wait_s`` in all."""
        deadline = time.monotonic() + self.config.enrol_wait_s
        try:
            watch_list = self.watch_list_id or await self._retried(self._watch_list, deadline)
            dossier = await self._retried(lambda: self.ctx.api.post("/v1/dossiers", {
                "name": f"Frequent visitor {visitor.visitor_id}"[:256], "watch_lists": [watch_list],
                "comment": f"enrolled by the frequent_visitors plug-in after {len(visitor.visits)} visits"}), deadline)
        except ApiClientError as exc:
            log.warning("frequent visitor %s: dossier not created: %s", visitor.visitor_id, exc)
            return None, str(exc)
        dossier_id = str(dossier["id"])
        try:
            await self._retried(lambda: self.ctx.api.post(f"/v1/dossiers/{dossier_id}/faces",
                                                          {"face": f"event:{event.event_id}"}), deadline)
        except ApiClientError as exc:
            log.warning("frequent visitor %s: face not enrolled: %s", visitor.visitor_id, exc)
            return dossier_id, str(exc)
        return dossier_id, None

    @staticmethod
    async def _retried(call: Callable[[], Awaitable[Any]], deadline: float) -> Any:
        while True:
            try:
                return await call()
            except ApiClientError as exc:
                passing = exc.status in (0, 502, 503, 504) or (exc.status == 422 and "unknown" in exc.message)
                if not passing or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(ENROL_RETRY_S)

    async def _watch_list(self) -> str:
        """The id of the watch list named ``watch_list``, created when there is none."""
        name, cursor = self.config.watch_list, None
        while True:
            params: dict[str, str | int | float] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = await self.ctx.api.get("/v1/watch-lists", params)
            for wl in page.get("results", []):
                if wl.get("name") == name:
                    self.watch_list_id = str(wl["id"])
                    return self.watch_list_id
            cursor = page.get("next_cursor")
            if not cursor:
                break
        created = await self.ctx.api.post("/v1/watch-lists", {"name": name})
        self.watch_list_id = str(created["id"])
        return self.watch_list_id

    def shutdown(self) -> None:
        log.info("frequent_visitors: forgetting %d visitors", len(self.visitors))


def activate(ctx: PluginContext) -> FrequentVisitors:
    try:
        config = FrequentVisitorsConfig.model_validate(dict(ctx.options))
    except ValidationError as exc:
        raise FacePluginError(f"frequent_visitors options: {exc}") from exc
    return FrequentVisitors(ctx, config)
