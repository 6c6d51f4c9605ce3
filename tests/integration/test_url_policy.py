"""Who may be reached (issue 16, point 8): the URL policy of webhooks and cameras through the real API app
(SQLite, Milvus Lite, local media, no broker: refusals come before anything is stored or published), the
delivery log telling operators, not viewers, why a delivery failed, and the policy applied again where a
stored URL is used: the decoder before every open (embedded broker), the Telegram sink's base URL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.api.state import STATE
from ops.harness import LocalPipeline
from ops.root import api_app
from pipeline.settings import Settings
from schemas.notify import OutboxItem, WebhookIn
from tests.integration.conftest import settings_for
from tests.servers import Tarpit

pytestmark = pytest.mark.integration

TOKEN = "policy-admin-token"
INTERNAL = ["http://127.0.0.1:8080/hook", "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/hook", "http://192.168.0.1/hook", "http://localhost:9/hook", "http://0.0.0.0/hook"]


async def _call(client: TestClient, method: str, path: str, status: int, token: str = TOKEN, **kw: Any) -> Any:
    resp = await client.request(method, path, headers={"Authorization": f"Token {token}"}, **kw)
    body = await resp.json() if resp.content_type == "application/json" else None
    assert resp.status == status, (method, path, resp.status, body)
    return body


async def _with_client(settings: Settings, scenario: Any) -> None:
    async with api_app(settings) as app:
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            await scenario(client, app)
        finally:
            await client.close()


async def test_internal_and_local_targets_are_refused(tmp_path: Path) -> None:
    media = tmp_path / "media-root"
    media.mkdir()
    (media / "lobby.mp4").write_bytes(b"")
    settings = Settings(data_dir=tmp_path / "data", api={"admin_token": TOKEN, "media_root": str(media)})

    async def scenario(client: TestClient, app: Any) -> None:
        for url in [*INTERNAL, "ftp://example.com/x", "file:///etc/passwd"]:
            body = await _call(client, "POST", "/v1/webhooks", 422, json={"url": url})
            assert body["error"]["code"] in ("forbidden_url", "validation_error", "invalid"), body
        hook_id = (await _call(client, "POST", "/v1/webhooks", 201,
                               json={"url": "https://93.184.215.14/hook"}))["id"]  # a public address
        await _call(client, "PATCH", f"/v1/webhooks/{hook_id}", 422, json={"url": "http://127.0.0.1/x"})
        for url in [*INTERNAL, "rtsp://127.0.0.1/live", "rtsp://10.0.0.7/stream", "file:///etc/passwd",
                               "/etc/passwd", str(media / ".." / "escape.mp4"), "concat:/a.mp4|/b.mp4",
                               "pipe:0", "data:video/mp4;base64,AAAA", "subfile:,start,0,end,0,:/etc/passwd",
                               "gopher://example.com/"]:
            body = await _call(client, "POST", "/v1/cameras", 422, json={"name": "c", "url": url})
            assert body["error"]["code"] == "forbidden_url", (url, body)
        # allowed: public streams, a device index, local files under the media root (no broker here: 503 is
        # "stored nothing, could not publish", past the policy)
        for url in ("rtsp://93.184.215.14/live", "0", str(media / "lobby.mp4"), f"file://{media}/lobby.mp4"):
            await _call(client, "POST", "/v1/cameras", 503, json={"name": "c", "url": url})

    await _with_client(settings, scenario)


async def test_setting_allows_private_targets(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api={"admin_token": TOKEN, "url_allow_private": True})

    async def scenario(client: TestClient, app: Any) -> None:
        await _call(client, "POST", "/v1/webhooks", 201, json={"url": "http://127.0.0.1:9/hook"})
        await _call(client, "POST", "/v1/cameras", 503, json={"name": "c", "url": "rtsp://10.0.0.7/stream"})
        body = await _call(client, "POST", "/v1/cameras", 422, json={"name": "c", "url": "concat:/a|/b"})
        assert body["error"]["code"] == "forbidden_url"

    await _with_client(settings, scenario)


async def test_delivery_errors_are_for_operators_not_viewers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api={"admin_token": TOKEN, "url_allow_private": True})

    async def scenario(client: TestClient, app: Any) -> None:
        st = app[STATE]
        hook = await st.webhooks.create(WebhookIn(url="http://127.0.0.1:9/hook"))
        hook_id = hook.webhook_id
        await st.webhooks.enqueue([OutboxItem(hook_id, "e1", b"{}")], 100)
        pending = await st.webhooks.take_batch(hook_id, 1, 0.0)
        assert pending is not None
        await st.webhooks.record_attempt(pending.delivery.delivery_id, 1, "pending", None, "connection refused")
        for role in ("viewer", "operator"):
            await _call(client, "POST", "/v1/users", 201, json={"username": role, "password": f"{role}-pw-1",
                                                                 "role": role})
        tokens = {}
        for role in ("viewer", "operator"):
            login = await client.post("/v1/auth/login", json={"username": role, "password": f"{role}-pw-1"})
            tokens[role] = (await login.json())["token"]
        seen = (await _call(client, "GET", f"/v1/webhooks/{hook_id}/deliveries", 200,
                            token=tokens["viewer"]))["results"]
        assert seen and seen[0]["error"] is None and seen[0]["http_status"] is None
        seen = (await _call(client, "GET", f"/v1/webhooks/{hook_id}/deliveries", 200,
                            token=tokens["operator"]))["results"]
        assert seen[0]["error"] == "connection refused"

    await _with_client(settings, scenario)


async def test_the_decoder_refuses_stored_cameras_the_policy_refuses_now(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Cameras stored while the policy allowed them (here: an API allowing internal targets and a wider media
    root), decoded under a tighter policy: the decoder checks again before opening, contacts nothing, and
    the camera shows ``failed`` with the reason. ``localhost`` is a name that resolves to loopback."""
    wide, narrow = tmp_path / "wide", tmp_path / "wide" / "narrow"
    narrow.mkdir(parents=True)
    clip = wide / "lobby.avi"
    clip.write_bytes(b"")
    api_settings = settings_for(broker, tmp_path / "data", api={"admin_token": TOKEN, "url_allow_private": True,
                                                                "media_root": str(wide)})
    tight = api_settings.model_copy(update={"api": api_settings.api.model_copy(
        update={"url_allow_private": False, "media_root": narrow})})
    async with api_app(api_settings) as app, LocalPipeline(tight).running(("decoder",)), \
            Tarpit().serving() as tarpit:
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            ids = [(await _call(client, "POST", "/v1/cameras", 201, json={"name": name, "url": url}))["id"]
                   for name, url in (("rebound", f"http://localhost:{tarpit.port}/cam"), ("file", str(clip)))]
            cameras: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60
            while not cameras or any(c["status"] != "failed" for c in cameras):
                assert time.monotonic() < deadline, cameras
                await asyncio.sleep(0.2)
                cameras = [await _call(client, "GET", f"/v1/cameras/{i}", 200) for i in ids]
            errors = [c["last_error"] or "" for c in cameras]
            assert all(e.startswith("refused by the URL policy") for e in errors), errors
            assert "internal address" in errors[0] and "api.media_root" in errors[1], errors
            assert tarpit.accepted == 0  # nothing was contacted
        finally:
            await client.close()
