"""The API contract machinery: declarations drive routing, parsing, serialisation and the OpenAPI document,
and an answer outside its declaration fails."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from connectors.api.app import STRICT_CONTRACT, _route_tables, error_middleware
from connectors.api.core import Reply, RouteTable, path_id
from connectors.api.openapi import openapi_document
from schemas.api import ApiModel, Page

NOT_RESOURCES = {"DetectResponse", "VerifyResponse", "SearchResponse", "HealthOut", "LoginResponse", "CounterWindow",
                 "BulkAcknowledgeResponse", "VideoLivenessResponse"}


def _routes() -> list[Any]:
    return [r for t in _route_tables() for r in t.routes]


def test_every_operation_declares_its_answers() -> None:
    doc = openapi_document(_routes())
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            for status, resp in op["responses"].items():
                if status in ("204", "101"):
                    continue
                assert resp.get("content"), f"{method} {path} {status}: no schema"
            for status in ("401", "403") if op.get("security") else ():
                assert status in op["responses"]


def test_lists_page_and_resources_say_id() -> None:
    for r in _routes():
        model = r.response
        if model is None or r.raw:
            continue
        if issubclass(model, Page):
            names = set(r.query.model_fields) if r.query else set()
            assert {"limit", "cursor"} <= names, r.operation_id
            item = model.model_fields["results"].annotation.__args__[0]
            assert "id" in item.model_fields or item.__name__ in NOT_RESOURCES, (r.operation_id, item)
        else:
            assert "id" in model.model_fields or model.__name__ in NOT_RESOURCES, (r.operation_id, model)


class Thing(ApiModel):
    id: str
    name: str


class Other(BaseModel):
    nope: int


async def _client(table: RouteTable) -> TestClient:
    app = web.Application(middlewares=[error_middleware])
    app[STRICT_CONTRACT] = True
    table.install(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_undeclared_answers_fail() -> None:
    table = RouteTable()

    @table.add("GET", "/things/{id}", "one", "t", access="public")
    async def get_thing(request: web.Request) -> Thing:
        ident = path_id(request)
        if ident == "leak":
            return {"id": "x", "name": "n", "secret": "s"}  # type: ignore[return-value]
        if ident == "wrong":
            return Other(nope=1)  # type: ignore[return-value]
        if ident == "teapot":
            return Reply(Thing(id="x", name="n"), 418)  # type: ignore[return-value]
        return Thing(id=ident, name="n")

    @table.add("POST", "/things", "make", "t", access="public", status=201)
    async def make_thing(request: web.Request, body: Thing) -> Thing:
        return body

    @table.add("GET", "/raw", "raw", "t", access="public", raw="text/plain")
    async def raw(request: web.Request) -> web.Response:
        return web.Response(text="hi", status=299)

    client = await _client(table)
    try:
        ok = await client.get("/things/a")
        assert ok.status == 200 and await ok.json() == {"id": "a", "name": "n"}
        for bad in ("leak", "wrong", "teapot"):
            resp = await client.get(f"/things/{bad}")
            body = await resp.json()
            assert resp.status == 500 and body["error"]["code"] == "contract", (bad, body)
        made = await client.post("/things", json={"id": "b", "name": "m"})
        assert made.status == 201
        refused = await client.post("/things", json={"id": "b"})
        err = (await refused.json())["error"]
        assert refused.status == 422 and err["code"] == "invalid" and err["details"][0]["loc"] == ["name"]
        undeclared = await client.get("/raw")
        assert undeclared.status == 500
        missing = await client.get("/nowhere")
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    finally:
        await client.close()


def test_declaration_errors() -> None:
    table = RouteTable()
    with pytest.raises(TypeError, match="return annotation"):
        @table.add("GET", "/x", "x", "t")
        async def no_answer(request):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(TypeError, match="raw"):
        @table.add("GET", "/y", "y", "t")
        async def raw_without_type(request: web.Request) -> web.Response:
            return web.Response()
