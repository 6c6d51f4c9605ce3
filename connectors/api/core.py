"""Shared pieces of the API: the route table (drives routing, auth and the OpenAPI document), errors,
request parsing and JSON responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from schemas.api import ApiModel, EventFilters

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["public", "viewer", "operator", "admin"]
M = TypeVar("M", bound=BaseModel)
RANK = {"viewer": 0, "operator": 1, "admin": 2}
MAX_PAGE = 500
MAX_FORM_FIELD = 64 * 1024  # bytes of one text field of a multipart form


class ApiError(Exception):
    """An answer other than success: ``status`` and a human message (``fields`` for 422)."""

    def __init__(self, status: int, message: str, fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields


def invalid(field_name: str, message: str) -> ApiError:
    """A 422 naming one field."""
    return ApiError(422, f"{field_name}: {message}", [{"loc": [field_name], "msg": message}])


@dataclass(frozen=True)
class FormField:
    name: str
    description: str
    file: bool = False
    required: bool = True


@dataclass(frozen=True)
class RouteInfo:
    """One operation: how it is routed, who may call it, and what it takes and answers (for OpenAPI)."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    access: Access
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    form: tuple[FormField, ...] = ()
    response: Any = None  # a pydantic model class, or None (no JSON body)
    status: int = 200
    errors: tuple[int, ...] = ()


@dataclass
class RouteTable:
    routes: list[RouteInfo] = field(default_factory=list)

    def add(self, method: str, path: str, summary: str, tag: str, *, access: Access | None = None,
            body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
            form: tuple[FormField, ...] = (), response: Any = None, status: int = 200,
            errors: tuple[int, ...] = ()) -> Callable[[Handler], Handler]:
        """Decorator registering a handler. ``access`` defaults to viewer for GET, operator otherwise."""
        def register(handler: Handler) -> Handler:
            level = access or ("viewer" if method == "GET" else "operator")
            self.routes.append(RouteInfo(method, path, handler, summary, tag, level, body, query, form, response,
                                         status, errors))
            return handler
        return register

    def install(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)


class ListQuery(ApiModel):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Page size.")
    cursor: str | None = Field(None, max_length=1024, description="`next_cursor` of the previous page.")


class EventQuery(EventFilters):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Page size.")
    cursor: str | None = Field(None, max_length=1024, description="`next_cursor` of the previous page.")


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer from a pydantic model, a list of them, or plain data."""
    if isinstance(data, BaseModel):
        payload = data.model_dump(mode="json")
    elif isinstance(data, list):
        payload = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    else:
        payload = data
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def page(items: list[Any], next_cursor: str | None) -> web.Response:
    return json_response({"results": [i.model_dump(mode="json") for i in items], "next_cursor": next_cursor})


MAX_JSON_BODY = 1024 * 1024


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated into ``model`` (ValidationError -> 422; bad JSON -> 400; no JSON -> 415; more
    than ``MAX_JSON_BODY`` bytes -> 413, read no further)."""
    if request.content_type not in ("application/json", "") and not request.content_type.endswith("+json"):
        raise ApiError(415, "expected a JSON body (Content-Type: application/json)")
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise ApiError(413, f"JSON body larger than the limit of {MAX_JSON_BODY} bytes")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(413, f"JSON body larger than the limit of {MAX_JSON_BODY} bytes")
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "body must be a JSON object", [{"loc": ["body"], "msg": "expected an object"}])
    return model.model_validate(data)


def read_query(request: web.Request, model: type[M]) -> M:
    """Query parameters validated into ``model`` (``token`` is the auth parameter and is skipped)."""
    params = {k: v for k, v in request.query.items() if k != "token"}
    return validate_params(model, params)


def validate_params(model: type[M], params: dict[str, str]) -> M:
    """Text parameters (query or form fields) validated into ``model``: a non-finite number (``nan``,
    ``inf``) is a malformed request (400), any other invalid value a 422 naming its field."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        bad = [e for e in exc.errors(include_url=False) if e["type"] == "finite_number"]
        if bad:
            names = ", ".join(str(e["loc"][0]) for e in bad)
            raise ApiError(400, f"{names}: must be a finite number", validation_fields(exc)) from exc
        raise


def path_id(request: web.Request, name: str = "id") -> str:
    return request.match_info[name]


def validation_fields(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False)]
