"""Detect, verify and search (by photo, over dossiers or events), plus health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import Field, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from connectors.api.core import ApiError, FormField, Reply, RouteTable, validate_params, validation_fields
from connectors.api.faces import AnalysedFace, similarity_confidence
from connectors.api.state import ApiState, state
from connectors.api.uploads import Form, decode_image, read_form
from schemas.api import (
    DetectedFace,
    DetectResponse,
    EventFilters,
    HealthOut,
    SearchHit,
    SearchResponse,
    VerifyResponse,
)
from schemas.attributes import summarise

routes = RouteTable()
PHOTO = FormField("photo", "An image (JPEG, PNG, ...).", file=True)


async def _photo(st: ApiState, form: Form, name: str = "photo") -> object:
    return await asyncio.get_running_loop().run_in_executor(
        None, decode_image, form.file(name).data, st.settings.api.max_image_pixels, name)


@routes.add("POST", "/v1/detect", "Faces in a photo: boxes, landmarks, quality and attributes", "faces",
            form=(PHOTO,), errors=(503,))
async def detect(request: web.Request) -> DetectResponse:
    st = state(request)
    form = await read_form(request, st.settings.api.max_upload_bytes)
    image = await _photo(st, form)
    faces = await st.faces.analyse(image, describe=False, attributes=True)  # type: ignore[arg-type]
    return DetectResponse(
        width=image.shape[1], height=image.shape[0],  # type: ignore[attr-defined]
        faces=[DetectedFace(bbox=f.bbox, landmarks=f.landmarks, det_score=f.det_score, quality=f.quality,  # type: ignore[arg-type]
                            attributes=f.attributes, **summarise(f.attributes).fields()) for f in faces])


async def _largest(st: ApiState, form: Form, name: str) -> AnalysedFace:
    image = await _photo(st, form, name)
    return await st.faces.one_face(image, "largest", field_name=name)  # type: ignore[arg-type]


@routes.add("POST", "/v1/verify", "Are the largest faces of two photos the same person?", "faces",
            form=(FormField("photo1", "First image.", file=True), FormField("photo2", "Second image.", file=True)),
            errors=(503,))
async def verify(request: web.Request) -> VerifyResponse:
    st = state(request)
    form = await read_form(request, st.settings.api.max_upload_bytes)
    a = await _largest(st, form, "photo1")
    b = await _largest(st, form, "photo2")
    assert a.descriptor is not None and b.descriptor is not None
    conf = similarity_confidence(float(a.descriptor @ b.descriptor))
    return VerifyResponse(confidence=conf, match=conf >= st.settings.matcher.threshold)


class SearchForm(EventFilters):
    target: str = Field("dossiers", pattern="^(dossiers|events)$", description="`dossiers` or `events`.")
    limit: int = Field(10, ge=1, le=100)
    threshold: float | None = Field(None, ge=0, le=1, description="Minimum confidence; default the match threshold.")


@routes.add("POST", "/v1/search", "Find a photo's largest face among dossiers or events, ranked by confidence",
            "faces", form=(PHOTO, FormField("target", "`dossiers` (default) or `events`.", required=False),
                           FormField("limit", "Most results (1-100, default 10).", required=False),
                           FormField("threshold", "Minimum confidence (default: the match threshold).",
                                     required=False),
                           FormField("camera, camera_group, watch_list, dossier, matched, acknowledged, since, "
                                     "until, min_confidence", "Event filters (target=events).", required=False)),
            errors=(503,))
async def search(request: web.Request) -> SearchResponse:
    st = state(request)
    form = await read_form(request, st.settings.api.max_upload_bytes)
    try:
        params = validate_params(SearchForm, {k: v for k, v in form.fields.items() if v != ""})
    except ValidationError as exc:
        raise ApiError(422, "invalid search fields", validation_fields(exc)) from exc
    face = await _largest(st, form, "photo")
    assert face.descriptor is not None
    threshold = st.settings.matcher.threshold if params.threshold is None else params.threshold
    vector = face.descriptor.tolist()
    if params.target == "dossiers":
        hits = await _search_dossiers(st, vector, params.limit, threshold)
    else:
        hits = await _search_events(st, vector, params, threshold)
    return SearchResponse(results=hits)


async def _search_dossiers(st: ApiState, vector: list[float], limit: int, threshold: float) -> list[SearchHit]:
    raw = await st.vectors.search_dossier_faces(vector, limit * 4)
    best: dict[str, float] = {}
    for hit in raw:
        dossier_id = str(hit.fields.get("dossier_id", ""))
        conf = similarity_confidence(hit.cosine)
        if conf >= threshold and conf > best.get(dossier_id, -1.0):
            best[dossier_id] = conf
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:limit]
    dossiers = {d.id: d for d in await st.dossiers.get_many([d for d, _ in ranked])}
    return [SearchHit(confidence=c, dossier=dossiers[d]) for d, c in ranked if d in dossiers]


async def _search_events(st: ApiState, vector: list[float], params: SearchForm, threshold: float
                         ) -> list[SearchHit]:
    over = params.limit * (4 if params.acknowledged is not None or params.min_confidence is not None else 1)
    raw = await st.vectors.search_events(vector, min(over, 1000), params)
    scored = [(h.id, similarity_confidence(h.cosine)) for h in raw]
    scored = [(i, c) for i, c in scored if c >= threshold]
    events = {e.id: e for e in await st.events.get_many([i for i, _ in scored])}
    hits = []
    for ident, conf in scored:
        event = events.get(ident)
        if event is None:
            continue
        if params.acknowledged is not None and event.acknowledged != params.acknowledged:
            continue
        if params.min_confidence is not None and event.confidence < params.min_confidence:
            continue
        hits.append(SearchHit(confidence=conf, event=event))
    return hits[:params.limit]




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
