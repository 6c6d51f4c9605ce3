"""The API's contract machinery: one declaration per operation drives routing, request parsing, response
serialisation, auth and the OpenAPI document, so they cannot drift apart.

A handler declares itself with ``@routes.add(method, path, summary, tag, ...)`` and its signature:

- a parameter ``body: SomeModel`` is the JSON request body, parsed and validated before the handler runs;
- a parameter ``query: SomeModel`` is the query string, parsed and validated likewise;
- with file fields declared (``form=``), ``body`` may also come as ``multipart/form-data`` (its text fields
  validated into the same model) and a parameter ``form: Form`` receives the files (empty for JSON);
- the return annotation is the success response: a pydantic model (``Page[X]`` for lists), ``None`` for an
  empty answer (204 by default), or ``web.StreamResponse`` for a raw body whose media type is declared with
  ``raw=`` (images, metrics, HTML);
- ``Reply(value, status)`` answers another declared status (``responses={503: HealthOut}``).

Whatever a handler returns is validated against its declared model and serialised through it: a field the
model does not declare cannot leak, a missing one is a contract violation (500, logged). Errors are
``ApiError``: ``{"error": {"code", "message", "details"}}`` (``ErrorBody``) with the right status.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from connectors.api.errors import ERROR_CODES, ApiError, error_payload, invalid
from connectors.api.uploads import MAX_FORM_FIELD, Form, read_form
from schemas.api import ApiModel, EventFilters, Page

Handler = Callable[..., Awaitable[Any]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["public", "viewer", "operator", "admin"]
# besides the Authorization header: `?token=` (websockets, which cannot send headers) or a signed URL (media)
Credentials = Literal["header", "query", "signed"]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
RANK = {"viewer": 0, "operator": 1, "admin": 2}
__all__ = ["ERROR_CODES", "MAX_FORM_FIELD", "ApiError", "error_payload", "invalid"]  # re-exported
MAX_PAGE = 500
DEFAULT_FORM_LIMIT = 20 * 1024 * 1024
FORM_LIMIT = web.AppKey("facestream_form_limit", int)  # bytes of one file of a form (api.max_upload_bytes)
log = logging.getLogger(__name__)



class ContractError(RuntimeError):
    """A handler answered something its declaration does not allow (a server bug: 500)."""


@dataclass(frozen=True)
class FormField:
    name: str
    description: str
    file: bool = False
    required: bool = True


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A success body with a status other than the operation's default (it must be declared)."""

    value: T
    status: int


@dataclass(frozen=True)
class RouteInfo:
    """One operation: how it is routed, who may call it, and what it takes and answers (for OpenAPI)."""

    method: str
    path: str
    handler: Endpoint  # the aiohttp endpoint (parses, calls the declared handler, serialises)
    summary: str
    tag: str
    access: Access
    operation_id: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    form: tuple[FormField, ...] = ()
    response: Any = None  # a pydantic model class (or type), or None (no body)
    raw: str | None = None  # media type of a raw (non-JSON) success body
    status: int = 200
    errors: tuple[int, ...] = ()
    responses: dict[int, Any] = field(default_factory=dict)  # other success statuses -> model
    description: str = ""
    credentials: Credentials = "header"

    def error_statuses(self) -> set[int]:
        """Every error status this operation can answer (declared or implied by what it takes)."""
        statuses = set(self.errors) | {500}
        if self.access != "public":
            statuses |= {401, 403}
        if self.body is not None:
            statuses |= {400, 413, 415, 422}
        if self.query is not None:
            statuses |= {400, 422}
        if self.form:
            statuses |= {400, 413, 415, 422}
        if "{" in self.path:
            statuses.add(404)
        return statuses

    def allowed_statuses(self) -> set[int]:
        return {self.status} | set(self.responses) | self.error_statuses()


def _adapter(tp: Any) -> TypeAdapter[Any] | None:
    return None if tp is None else TypeAdapter(tp)


def _declared(handler: Handler) -> tuple[type[BaseModel] | None, type[BaseModel] | None, Any, bool]:
    """(body model, query model, response type, raw) from the handler's signature."""
    hints = typing.get_type_hints(handler)
    params = inspect.signature(handler).parameters
    unknown = set(params) - {"request", "body", "query", "form"}
    if unknown:
        raise TypeError(f"{handler.__qualname__}: parameters other than request, body, query: {sorted(unknown)}")
    if "return" not in hints:
        raise TypeError(f"{handler.__qualname__}: declare the response with a return annotation")
    ret = _without_reply(hints["return"])
    raw = isinstance(ret, type) and issubclass(ret, web.StreamResponse)
    if ret is type(None):
        ret = None
    return hints.get("body"), hints.get("query"), (None if raw else ret), raw


def _without_reply(tp: Any) -> Any:
    """``X | Reply[Y]`` -> ``X`` (the other statuses are declared with ``responses=``)."""
    args = typing.get_args(tp)
    if args and typing.get_origin(tp) in (typing.Union, types.UnionType):
        kept = [a for a in args if typing.get_origin(a) is not Reply and a is not Reply]
        return kept[0] if len(kept) == 1 else typing.Union[tuple(kept)]  # noqa: UP007
    return tp


@dataclass
class RouteTable:
    routes: list[RouteInfo] = field(default_factory=list)

    def add(self, method: str, path: str, summary: str, tag: str, *, access: Access | None = None,
            form: tuple[FormField, ...] = (), status: int | None = None, errors: tuple[int, ...] = (),
            raw: str | None = None, responses: dict[int, Any] | None = None,
            description: str = "", credentials: Credentials = "header") -> Callable[[Handler], Handler]:
        """Decorator declaring an operation (see the module docstring). ``access`` defaults to viewer for GET,
        operator otherwise; ``status`` to 200 (201 for a POST that creates, given explicitly; 204 for ``None``)."""
        def register(handler: Handler) -> Handler:
            body, query, response, is_raw = _declared(handler)
            if is_raw and raw is None:
                raise TypeError(f"{handler.__qualname__}: a raw response needs raw='media/type'")
            level = access or ("viewer" if method == "GET" else "operator")
            code = status or (204 if response is None and not is_raw else 200)
            info = RouteInfo(method, path, _endpoint(handler, body, query), summary, tag, level, handler.__name__,
                             body, query, form, response, raw, code, errors, dict(responses or {}),
                             description, credentials)
            object.__setattr__(info.handler, "route_info", info)
            self.routes.append(info)
            return handler
        return register

    def install(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)


async def _read_input(request: web.Request, info: RouteInfo, wants_form: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if info.query is not None:
        kwargs["query"] = read_query(request, info.query)
    if info.body is not None and info.form and request.content_type.startswith("multipart/"):
        form = await read_form(request, request.app.get(FORM_LIMIT, DEFAULT_FORM_LIMIT))
        values = {k: (v if len(v) > 1 else v[0]) for k, v in form.lists.items() if any(v)}
        kwargs["body"] = validate_params(info.body, values)
        kwargs["form"] = form
    elif info.body is not None:
        kwargs["body"] = await read_body(request, info.body)
        kwargs["form"] = Form({}, {})
    if not wants_form:
        kwargs.pop("form", None)
    return kwargs


def _endpoint(handler: Handler, body: type[BaseModel] | None, query: type[BaseModel] | None) -> Endpoint:
    adapters: dict[int, TypeAdapter[Any] | None] = {}
    wants_form = "form" in inspect.signature(handler).parameters

    async def endpoint(request: web.Request) -> web.StreamResponse:
        info: RouteInfo = endpoint.route_info  # type: ignore[attr-defined]
        result = await handler(request, **await _read_input(request, info, wants_form))
        status = info.status
        if isinstance(result, Reply):
            status, result = result.status, result.value
        if isinstance(result, web.StreamResponse):
            if info.raw is None:
                raise ContractError(f"{info.operation_id} answered a raw response; it declares JSON")
            return result
        declared = info.response if status == info.status else info.responses.get(status, ...)
        if declared is ...:
            raise ContractError(f"{info.operation_id} answered status {status}, which it does not declare")
        if declared is None:
            if result is not None:
                raise ContractError(f"{info.operation_id} answered a body; it declares none")
            return web.Response(status=status)
        if status not in adapters:
            adapters[status] = _adapter(declared)
        adapter = adapters[status]
        assert adapter is not None
        try:
            value = adapter.validate_python(result, from_attributes=True)
        except ValidationError as exc:
            raise ContractError(f"{info.operation_id}: the answer does not match {declared!r}: {exc}") from exc
        return web.Response(body=adapter.dump_json(value), status=status, content_type="application/json")

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


class ListQuery(ApiModel):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Page size.")
    cursor: str | None = Field(None, max_length=1024, description="`next_cursor` of the previous page.")


class EventQuery(EventFilters):
    ordering: Literal["-timestamp", "timestamp", "-confidence", "confidence"] = Field(
        "-timestamp", description="Sort by time or confidence; `-` for descending (default: newest first).")
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Page size.")
    cursor: str | None = Field(None, max_length=1024, description="`next_cursor` of the previous page.")


def page(items: list[Any], next_cursor: str | None) -> Page[Any]:
    """A list answer; the route's declared ``Page[X]`` validates the items."""
    return Page[Any](results=items, next_cursor=next_cursor)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer from a pydantic model, a list of them, or plain data (for answers outside the route
    table: errors, the OpenAPI document)."""
    if isinstance(data, BaseModel):
        payload = data.model_dump(mode="json")
    elif isinstance(data, list):
        payload = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    else:
        payload = data
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


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
    """Query parameters validated into ``model`` (a parameter given several times is a list, for list-typed
    fields)."""
    params: dict[str, Any] = {}
    for k in request.query:
        if k in params:
            continue
        values = request.query.getall(k)
        params[k] = values if len(values) > 1 else values[0]
    return validate_params(model, params)


def validate_params(model: type[M], params: dict[str, Any]) -> M:
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
