"""Schemathesis against the served OpenAPI document: every operation but the destructive ones (DELETE, and
fetching arbitrary URLs) gets generated requests, valid and invalid, with bounded examples; no answer may be a
server error or break the schema, status codes and media types its operation declares.

The API runs as in production (real aiohttp server on loopback, SQLite, Milvus Lite, local media) in a thread
of its own, since schemathesis calls it synchronously, on the session's embedded broker (no stage consumes:
cameras and watch lists the fuzzer creates are published and go nowhere)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ops.broker import EmbeddedBroker
from ops.root import api_app
from pipeline.settings import Settings
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration
TOKEN = "fuzz-admin-token"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class ServedApi:
    """The API app served on 127.0.0.1 by an event loop in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzzed-api", daemon=True)

    def __enter__(self) -> ServedApi:
        self._thread.start()
        if not self._ready.wait(120) or self._error is not None:
            raise RuntimeError(f"the API did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with api_app(self.settings) as app:
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.base_url = f"http://127.0.0.1:{port}"
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()


@pytest.fixture(scope="module")
def served(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    config = settings_for(broker, data, api={"admin_token": TOKEN, "admin_password": "fuzz-pw",
                                             "contract_checks": "fail", "max_image_pixels": 4_000_000})
    with ServedApi(config) as api:
        yield api


def _document() -> dict[str, object]:
    from connectors.api.app import _route_tables
    from connectors.api.openapi import openapi_document

    return openapi_document([r for t in _route_tables() for r in t.routes])


schema = schemathesis.openapi.from_dict(_document()).exclude(method="DELETE").exclude(path="/v1/videos/from-url")


def test_the_served_document_is_the_fuzzed_one(served: ServedApi) -> None:
    import requests

    assert requests.get(f"{served.base_url}/v1/openapi.json", timeout=10).json() == _document()


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_breaks_its_contract(case: schemathesis.Case, served: ServedApi) -> None:
    case.call_and_validate(base_url=served.base_url, headers={"Authorization": f"Token {TOKEN}"}, checks=CHECKS)
