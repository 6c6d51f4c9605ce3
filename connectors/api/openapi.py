"""The OpenAPI 3.1 document, generated from the route table and the pydantic models (no framework)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connectors.api.core import MAX_FORM_FIELD, RouteInfo
from schemas.api import ErrorBody

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_ERRORS = {400: "Bad input (corrupt image, bad JSON)", 401: "No or bad token", 403: "Role not allowed",
           404: "Unknown id", 409: "Conflict", 413: "Upload too large", 415: "Unsupported media type",
           422: "Invalid fields (listed in `fields`)", 503: "A dependency (broker, models) is unavailable"}


def openapi_document(routes: list[RouteInfo], version: str = "0.1.0") -> dict[str, Any]:
    models = _collect_models(routes)
    keys = [(m, mode) for m in models for mode in ("validation", "serialization")]
    mapping, defs = models_json_schema(keys, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, mapping)
    return {
        "openapi": "3.1.0",
        "info": {"title": "facestream query API", "version": version,
                 "description": "Watch lists, dossiers, cameras, events, videos, detect/verify/search. "
                                "Lists answer `{\"results\": [...], \"next_cursor\": ...}` and take `limit` "
                                "and `cursor`. Times are UNIX seconds; confidences lie in [0, 1]."},
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
        for model in (route.body, route.response):
            if isinstance(model, type) and issubclass(model, BaseModel) and model not in found:
                found.append(model)
    return found


def _ref(mapping: dict[Any, Any], model: type[BaseModel], mode: str) -> dict[str, Any]:
    return dict(mapping[(model, mode)])


def _operation(route: RouteInfo, mapping: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "tags": [route.tag],
                          "operationId": route.handler.__name__, "parameters": _parameters(route)}
    if route.access != "public":
        op["security"] = [{"TokenAuth": []}]
        op["description"] = f"Needs role {route.access} or above."
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(mapping, route.body, "validation")}}}
    elif route.form:
        text = {"type": "string", "maxLength": MAX_FORM_FIELD}
        props = {f.name: ({"type": "string", "format": "binary"} if f.file else text)
                 | {"description": f.description} for f in route.form}
        required = [f.name for f in route.form if f.required]
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "properties": props, "required": required}}}}
    responses: dict[str, Any] = {}
    if route.response is not None:
        responses[str(route.status)] = {"description": "Success", "content": {
            "application/json": {"schema": _ref(mapping, route.response, "serialization")}}}
    else:
        responses[str(route.status)] = {"description": "Success"}
    statuses = set(route.errors) | ({401, 403} if route.access != "public" else set())
    if route.body is not None or route.query is not None:
        statuses.add(422)
    for status in sorted(statuses):
        responses[str(status)] = {"description": _ERRORS.get(status, "Error"), "content": {
            "application/json": {"schema": _ref(mapping, ErrorBody, "serialization")}}}
    op["responses"] = responses
    return op


def _parameters(route: RouteInfo) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in _PARAM.findall(route.path)]
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            field = route.query.model_fields[name]
            params.append({"name": name, "in": "query", "required": name in required,
                           "description": field.description or "", "schema": prop})
    return params
