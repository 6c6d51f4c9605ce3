"""Hostile but well-formed input against the real API app (SQLite, Milvus Lite, local media; no broker needed):
decompression bombs in every accepted image format, crafted cursors and non-finite numbers, oversized fields."""

from __future__ import annotations

import base64
import tracemalloc
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ops.broker import EmbeddedBroker
from ops.root import api_app
from tests.integration.conftest import settings_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

TOKEN = "hostile-admin-token"
ADMIN = {"Authorization": f"Token {TOKEN}"}
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
async def client(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory):
    settings = settings_for(broker, tmp_path_factory.mktemp("hostile"),
                            api={"admin_token": TOKEN, "admin_password": "hostile-pw", "max_image_pixels": MAX_PIXELS})
    async with api_app(settings) as app:
        test_client = TestClient(TestServer(app))
        await test_client.start_server()
        try:
            yield test_client
        finally:
            await test_client.close()


async def _call(client: TestClient, method: str, path: str, status: int, **kwargs: Any) -> Any:
    resp = await client.request(method, path, headers=ADMIN, **kwargs)
    body = await resp.json() if resp.content_type == "application/json" else await resp.read()
    assert resp.status == status, (method, path, resp.status, body)
    return body


def _bomb(ext: str, side: int, params: list[int]) -> bytes:
    """A small file that decodes to ``side`` x ``side`` pixels (a constant image compresses to almost nothing)."""
    ok, buf = cv2.imencode(ext, np.zeros((side, side, 3), np.uint8), params)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("ext", "params"), [(".tiff", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                                             (".png", []), (".jpg", []), (".gif", [])])
async def test_decompression_bomb_refused_before_decoding(client: TestClient, ext: str, params: list[int]) -> None:
    side = 4000  # 16 Mpx: 48 MB once decoded to BGR, against a limit of 1 Mpx
    data = _bomb(ext, side, params)
    assert len(data) < 2_000_000
    form = aiohttp.FormData()
    form.add_field("photo", data, filename=f"bomb{ext}", content_type="application/octet-stream")
    tracemalloc.start()
    try:
        body = await _call(client, "POST", "/v1/detect", 413, data=form)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"{side}x{side}" in body["error"]["message"]
    # nothing of the decoded size was ever allocated (numpy/OpenCV buffers are traced)
    assert peak < 3 * side * side // 4, f"{ext}: {peak / 1e6:.0f} MB allocated for a refused upload"


async def test_image_whose_header_hides_its_size_is_refused(client: TestClient) -> None:
    webp = b"RIFF\x10\x00\x00\x00WEBPJUNK\x04\x00\x00\x00abcd"  # no VP8/VP8L/VP8X chunk
    tiff = b"II*\x00\x08\x00\x00\x00\x00\x00"  # a directory without width and length
    for name, data in (("x.webp", webp), ("x.tiff", tiff)):
        form = aiohttp.FormData()
        form.add_field("photo", data, filename=name, content_type="application/octet-stream")
        body = await _call(client, "POST", "/v1/detect", 400, data=form)
        assert "size" in body["error"]["message"]


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


LISTS = ["/v1/camera-groups", "/v1/cameras", "/v1/watch-lists", "/v1/dossiers", "/v1/events", "/v1/videos",
         "/v1/episodes", "/v1/counters", "/v1/webhooks", "/v1/telegram-rules", "/v1/users"]
CRAFTED = [b'[{"a": 1}, []]', b'[[1], "x"]', b'["abc", 1]', b"[null, null]", b'[true, "x"]', b'{"a": 1}',
           b'[1e999, "x"]', b'[1, "x", 2]', b'"text"']


@pytest.mark.parametrize("path", LISTS)
async def test_crafted_cursors_answer_400(client: TestClient, path: str) -> None:
    for raw in CRAFTED:
        body = await _call(client, "GET", path, 400, params={"cursor": _cursor(raw)})
        assert "cursor" in body["error"]["message"], (raw, body)
    await _call(client, "GET", path, 400, params={"cursor": "not base64 !!"})
    await _call(client, "GET", path, 200, params={"cursor": _cursor(b'[0, ""]')})


async def test_non_finite_numbers_answer_400(client: TestClient) -> None:
    counter = await _call(client, "POST", "/v1/counters", 201, json={"name": "door", "camera_groups": ["default"]})
    paths = ["/v1/events?since=nan", "/v1/events?until=inf", "/v1/events?min_confidence=nan",
             "/v1/episodes?since=nan", "/v1/episodes?until=-inf",
             f"/v1/counters/{counter['id']}/records?since=nan",
             f"/v1/counters/{counter['id']}/records?since=0&until=10&step=nan"]
    for path in paths:
        body = await _call(client, "GET", path, 400)
        assert "finite" in body["error"]["message"], (path, body)
    await _call(client, "GET", "/v1/events?since=0", 200)


async def test_every_field_is_bounded(client: TestClient) -> None:
    mb = "x" * (1024 * 1024)
    long = "x" * 5000
    await _call(client, "POST", "/v1/counters", 413, json={"name": mb})
    await _call(client, "POST", "/v1/counters", 422, json={"name": long})
    await _call(client, "POST", "/v1/telegram-rules", 422, json={"name": long, "chat_id": "1"})
    await _call(client, "POST", "/v1/telegram-rules", 422, json={"chat_id": long})
    await _call(client, "POST", "/v1/webhooks", 422, json={"url": "https://example.com/" + long})
    await _call(client, "POST", "/v1/webhooks", 422, json={"url": "https://example.com/", "secret": long})
    await _call(client, "POST", "/v1/webhooks", 422,
                json={"url": "https://example.com/", "filters": {"camera_ids": ["c"] * 1000}})
    await _call(client, "POST", "/v1/dossiers", 413, json={"name": "big", "meta": {"blob": "x" * 10_000_000}})
    await _call(client, "POST", "/v1/dossiers", 422, json={"name": "big", "meta": {"blob": "x" * 100_000}})
    await _call(client, "POST", "/v1/dossiers", 422,
                json={"name": "many", "meta": {f"k{i}": i for i in range(1000)}})
    await _call(client, "POST", "/v1/dossiers", 201, json={"name": "fine", "meta": {"badge": "17"}})
    await _call(client, "POST", "/v1/cameras", 422, json={"name": "c", "url": "rtsp://x/", "camera_group": long})


def _unbounded(schema: dict[str, Any], defs: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    """Places in a request schema where a string, array or object has no size bound."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _unbounded(defs[name], defs, name, seen | {name})
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += _unbounded(sub, defs, where, seen)
    kind = schema.get("type")
    if kind == "string" and "maxLength" not in schema and "enum" not in schema and "const" not in schema \
            and schema.get("format") != "binary":
        found.append(where)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(where)
        items = schema.get("items") or {}
        found += _unbounded(items, defs, where + "[]", seen)
        for i, sub in enumerate(schema.get("prefixItems", [])):
            found += _unbounded(sub, defs, f"{where}[{i}]", seen)
    if kind == "object":
        props = schema.get("properties")
        if props is None and "maxProperties" not in schema:
            found.append(where)
        for name, sub in (props or {}).items():
            found += _unbounded(sub, defs, f"{where}.{name}", seen)
    return found


async def test_openapi_states_the_bounds_of_every_input(client: TestClient) -> None:
    doc = await _call(client, "GET", "/v1/openapi.json", 200)
    defs = doc["components"]["schemas"]
    missing: list[str] = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                if param["in"] == "query":
                    missing += _unbounded(param["schema"], defs, f"{method} {path} ?{param['name']}", set())
            for content in op.get("requestBody", {}).get("content", {}).values():
                missing += _unbounded(content["schema"], defs, f"{method} {path}", set())
    assert not missing, missing
    meta = defs["DossierIn"]["properties"]["meta"]
    assert meta["maxProperties"] and "bytes" in meta["description"]

