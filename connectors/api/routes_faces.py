"""Detect, verify and search (by photo or by reference, over dossiers or events), plus health and metrics.

Every face these take is a photo (multipart) or a reference to a known face (``detection:<id>``,
``event:<id>``, ``dossierface:<id>``; JSON or a form field): ``connectors/api/references.py``.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from connectors.api.core import FormField, Reply, RouteTable
from connectors.api.faces import similarity_confidence
from connectors.api.references import face_input, jpeg, photo
from connectors.api.state import ApiState, state
from connectors.api.uploads import Form, read_form
from connectors.sql.base import new_id
from connectors.sql.references import Detection, DetectionRepository
from schemas.api import (
    DetectedFace,
    DetectResponse,
    HealthOut,
    SearchHit,
    SearchIn,
    SearchResponse,
    VerifyIn,
    VerifyResponse,
)
from schemas.attributes import summarise

routes = RouteTable()
PHOTO = FormField("photo", "An image (JPEG, PNG, ...).", file=True)


def l2(cosine: float) -> float:
    """L2 distance of two unit vectors from their cosine."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * cosine))


@routes.add("POST", "/v1/detect", "Faces in a photo: boxes, landmarks, quality, attributes and a detection_id "
            "per face, usable as `detection:<id>` in search, verify and enrolment until `expires_at`", "faces",
            form=(PHOTO,), errors=(503,))
async def detect(request: web.Request) -> DetectResponse:
    st = state(request)
    form = await read_form(request, st.settings.api.max_upload_bytes)
    image = await photo(st, form, "photo")
    faces = await st.faces.analyse(image, describe=True, attributes=True)
    repo = DetectionRepository(st.engine)
    loop = asyncio.get_running_loop()
    for key in await repo.purge():
        await loop.run_in_executor(None, st.media.delete, key)
    batch = new_id()
    kept = [Detection(new_id(), f.bbox, f.quality, np.asarray(f.descriptor, np.float32).tolist()) for f in faces]
    key = f"detections/{batch}.jpg"
    if kept:
        await loop.run_in_executor(None, st.media.put, key, jpeg(image, 90), "image/jpeg")
    expires = await repo.save(batch, key, kept, st.settings.api.detection_ttl_s)
    return DetectResponse(
        width=image.shape[1], height=image.shape[0], expires_at=expires,
        faces=[DetectedFace(detection_id=d.id, bbox=f.bbox, landmarks=f.landmarks,  # type: ignore[arg-type]
                            det_score=f.det_score, quality=f.quality, attributes=f.attributes,
                            **summarise(f.attributes).fields())
               for d, f in zip(kept, faces, strict=True)])


@routes.add("POST", "/v1/verify", "Are two faces the same person? Each a photo's largest face or a reference",
            "faces", form=(FormField("photo1", "First image (or `face1`).", file=True, required=False),
                           FormField("photo2", "Second image (or `face2`).", file=True, required=False)),
            errors=(503,))
async def verify(request: web.Request, body: VerifyIn, form: Form) -> VerifyResponse:
    st = state(request)
    a = await face_input(st, form, "photo1", body.face1, "face1")
    b = await face_input(st, form, "photo2", body.face2, "face2")
    cosine = float(a.descriptor @ b.descriptor)
    conf = similarity_confidence(cosine)
    return VerifyResponse(confidence=conf, distance=l2(cosine), match=conf >= st.settings.matcher.threshold)


@routes.add("POST", "/v1/search", "1:N identification: a face (photo or reference) among dossiers or past events, "
            "ranked by confidence, within similarity and distance thresholds and watch lists", "faces",
            form=(FormField("photo", "An image whose largest face is searched (or `face`).", file=True,
                            required=False),), errors=(503,))
async def search(request: web.Request, body: SearchIn, form: Form) -> SearchResponse:
    st = state(request)
    face = await face_input(st, form, "photo", body.face, "face")
    vector = face.descriptor.tolist()
    if body.target == "dossiers":
        return SearchResponse(results=await _search_dossiers(st, vector, body))
    return SearchResponse(results=await _search_events(st, vector, body))


def _accepts(st: ApiState, body: SearchIn, cosine: float) -> float | None:
    """The hit's confidence if it passes the similarity and distance thresholds, else None."""
    conf = similarity_confidence(cosine)
    threshold = st.settings.matcher.threshold if body.threshold is None else body.threshold
    if conf < threshold or (body.max_distance is not None and l2(cosine) > body.max_distance):
        return None
    return conf


async def _search_dossiers(st: ApiState, vector: list[float], body: SearchIn) -> list[SearchHit]:
    raw = await st.vectors.search_dossier_faces(vector, min(body.limit * 4, 1000), watch_lists=body.watch_lists,
                                                watch_list=body.watch_list)
    best: dict[str, float] = {}
    for hit in raw:
        dossier_id = str(hit.fields.get("dossier_id", ""))
        if _accepts(st, body, hit.cosine) is not None and hit.cosine > best.get(dossier_id, -2.0):
            best[dossier_id] = hit.cosine
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:body.limit]
    dossiers = {d.id: d for d in await st.dossiers.get_many([d for d, _ in ranked])}
    return [SearchHit(confidence=similarity_confidence(c), distance=l2(c), dossier=dossiers[d])
            for d, c in ranked if d in dossiers]


async def _search_events(st: ApiState, vector: list[float], body: SearchIn) -> list[SearchHit]:
    sql_only = (body.acknowledged, body.min_confidence, body.episode, body.video)
    post_filtered = any(v is not None for v in sql_only) or body.attribute_conditions_set()
    over = body.limit * (4 if post_filtered else 1)
    raw = await st.vectors.search_events(vector, min(over, 1000), body, watch_lists=body.watch_lists)
    scored = [(h.id, h.cosine) for h in raw if _accepts(st, body, h.cosine) is not None]
    events = {e.id: e for e in await st.events.get_many([i for i, _ in scored])}
    hits = []
    for ident, cosine in scored:
        event = events.get(ident)
        if event is None:
            continue
        if not body.admits(event):  # attribute filters (gender, age, mask, emotion) on the stored event
            continue
        if body.acknowledged is not None and event.acknowledged != body.acknowledged:
            continue
        if body.min_confidence is not None and event.confidence < body.min_confidence:
            continue
        if (body.episode is not None and event.episode != body.episode) or \
                (body.video is not None and event.video != body.video):
            continue
        hits.append(SearchHit(confidence=similarity_confidence(cosine), distance=l2(cosine), event=event))
    return hits[:body.limit]


# --- health and metrics -------------------------------------------------------------------------------------

@routes.add("GET", "/v1/health", "Health of the API and its stores (503 when one is down)", "ops",
            access="public", responses={503: HealthOut})
async def health(request: web.Request) -> HealthOut | Reply[HealthOut]:
    st = state(request)
    checks: dict[str, str] = {}
    try:
        async with st.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
        checks["sql"] = "ok"
    except (SQLAlchemyError, OSError, TimeoutError) as exc:  # reported, not raised
        checks["sql"] = f"error: {exc}"
    checks["milvus"] = "ok" if st.vectors._client is not None else "error: not open"
    checks["kafka"] = "ok" if st.publisher.producer is not None else "error: no broker configured"
    checks["models"] = "loaded" if st.faces.loaded else "not loaded (loads on first use)"
    checks["uptime_s"] = f"{time.time() - st.started_at:.0f}"
    ok = all(not v.startswith("error") for v in checks.values())
    out = HealthOut(status="ok" if ok else "degraded", checks=checks)
    return out if ok else Reply(out, 503)


@routes.add("GET", "/metrics", "Prometheus metrics of this process", "ops", access="public",
            raw="text/plain")
async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
