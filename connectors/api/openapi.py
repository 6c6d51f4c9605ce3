"""The OpenAPI 3.1 document, generated from the route table's declarations and the pydantic models (the same
declarations that route, parse and serialise: ``connectors/api/core.py``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connectors.api.core import MAX_FORM_FIELD, RouteInfo
from schemas.api import ErrorBody

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_ERRORS = {400: "Bad input (corrupt image, bad JSON, malformed parameter)", 401: "No or bad token",
           403: "Role not allowed", 404: "Unknown id", 409: "Conflict", 413: "Upload too large",
           415: "Unsupported media type", 422: "Invalid fields (listed in `error.details`)",
           429: "Too many failed logins: wait the `Retry-After` seconds",
           500: "Server error", 503: "A dependency (broker, models) is unavailable"}
DESCRIPTION = """Watch lists, dossiers, cameras, events, episodes, counters, notifications; detect, verify and search.

- Every list answers `{"results": [...], "next_cursor": ...}` and takes `limit` and `cursor` (pass the previous
  page's `next_cursor`; `null` means no more).
- Every resource's key is `id`.
- Every error answers `{"error": {"code", "message", "details"}}` with its HTTP status.
- Anything that needs a face takes a photo or a reference to a face already known: `detection:<id>` (from
  `POST /v1/detect`), `event:<id>` or `dossierface:<id>`.
- Times are UNIX seconds; confidences lie in [0, 1]."""


_CREDENTIAL_PARAMS: dict[str, list[dict[str, Any]]] = {
    "query": [{"name": "token", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 256},
               "description": "An access token, for clients that cannot send the Authorization header "
                              "(browsers' WebSocket). Accepted on this operation only."}],
    "signed": [{"name": "expires", "in": "query", "required": False,
                "schema": {"type": "string", "maxLength": 12, "pattern": "^[0-9]+$"},
                "description": "Expiry (UNIX s) of a signed URL the API returned; with `sig` it stands in for "
                               "the token. Expired or altered: 403."},
               {"name": "sig", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 64},
                "description": "Signature of a signed URL the API returned."}],
}


def openapi_document(routes: list[RouteInfo], version: str = "0.1.0") -> dict[str, Any]:
    models = _collect_models(routes)
    keys = [(m, mode) for m in models for mode in ("validation", "serialization")]
    mapping, defs = models_json_schema(keys, ref_template=REF)  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, mapping)
    return {
        "openapi": "3.1.0",
        "info": {"title": "facestream query API", "version": version, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"TokenAuth": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <token>` from POST /v1/auth/login (or the admin token)."}},
        },
    }


def _collect_models(routes: list[RouteInfo]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [ErrorBody]
    for route in routes:
        for model in (route.body, route.response, *route.responses.values()):
            if model is None:
                continue
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"{route.operation_id}: declare bodies and responses as pydantic models")
            if model not in found:
                found.append(model)
    return found


def _ref(mapping: dict[Any, Any], model: type[BaseModel], mode: str) -> dict[str, Any]:
    return dict(mapping[(model, mode)])


def _json(mapping: dict[Any, Any], model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(mapping, model, "serialization")}}}


def _operation(route: RouteInfo, mapping: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "tags": [route.tag],
                          "operationId": route.operation_id, "parameters": _parameters(route)}
    description = route.description
    if route.access != "public":
        op["security"] = [{"TokenAuth": []}, {}] if route.credentials == "signed" else [{"TokenAuth": []}]
        description = f"{description}\n\nNeeds role {route.access} or above.".strip()
    if description:
        op["description"] = description
    content: dict[str, Any] = {}
    if route.body is not None:
        content["application/json"] = {"schema": _ref(mapping, route.body, "validation")}
    if route.form:
        text = {"type": "string", "maxLength": MAX_FORM_FIELD}
        props: dict[str, Any] = {}
        required: list[str] = []
        if route.body is not None:  # the same fields as text parts, beside the files
            schema = route.body.model_json_schema(ref_template=REF)
            props.update(schema.get("properties", {}))
            required.extend(schema.get("required", []))
        props |= {f.name: ({"type": "string", "format": "binary"} if f.file else text)
                  | {"description": f.description} for f in route.form}
        required += [f.name for f in route.form if f.required]
        form_schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            form_schema["required"] = required
        content["multipart/form-data"] = {"schema": form_schema}
    if content:
        op["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    if route.raw is not None:
        schema = {} if route.raw == "application/json" else {"type": "string", "format": "binary"}
        responses[str(route.status)] = {"description": "Success", "content": {route.raw: {"schema": schema}}}
    elif route.response is not None:
        responses[str(route.status)] = _json(mapping, route.response, "Success")
    else:
        responses[str(route.status)] = {"description": "Success (no body)"}
    for status, model in sorted(route.responses.items()):
        responses[str(status)] = _json(mapping, model, _ERRORS.get(status, "Answer"))
    for status in sorted(route.error_statuses() - set(route.responses)):
        responses[str(status)] = _json(mapping, ErrorBody, _ERRORS.get(status, "Error"))
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": {
            "description": "Seconds to wait before the next attempt.", "schema": {"type": "integer"}}}
    op["responses"] = responses
    return op


def _parameters(route: RouteInfo) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                    for name in _PARAM.findall(route.path)]
    params += _CREDENTIAL_PARAMS.get(route.credentials, [])
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            field = route.query.model_fields[name]
            params.append({"name": name, "in": "query", "required": name in required,
                           "description": field.description or "", "schema": prop})
    return params
