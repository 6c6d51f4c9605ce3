"""No fixed admin/admin (issue 16, point 9): the real API app over restarts on one data dir (SQLite, Milvus
Lite, local media), and the real CLI refusing a default credential beyond loopback."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.sql.engine import open_sql
from connectors.sql.users import UserRepository, hash_password
from ops.root import api_app
from ops.stack import insecure_bind
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "password-admin-token"


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def call(self, method: str, path: str, status: int, token: str | None = TOKEN, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Token {token}"} if token else {}
        resp = await self.client.request(method, path, headers=headers, **kwargs)
        body = await resp.json() if resp.content_type == "application/json" else None
        assert resp.status == status, (method, path, resp.status, body)
        return body

    async def login(self, password: str, status: int = 200, user: str = "admin") -> str | None:
        body = await self.call("POST", "/v1/auth/login", status, token=None,
                               json={"username": user, "password": password})
        return body["token"] if status == 200 else None


class Box:
    def __init__(self, data: Path) -> None:
        self.data = data

    def settings(self, **api: Any) -> Settings:
        return Settings(data_dir=self.data, api={"admin_token": TOKEN, **api})

    async def run(self, settings: Settings, scenario: Any) -> None:
        async with api_app(settings) as app:
            client = TestClient(TestServer(app))
            await client.start_server()
            try:
                await scenario(Api(client))
            finally:
                await client.close()


def _generated(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m.group(1) for r in caplog.records
            if (m := re.search(r"shown only this once: (\S+)", r.getMessage()))]


async def test_admin_password_lifecycle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Box(tmp_path)
    caplog.set_level(logging.INFO)
    first: dict[str, str] = {}

    async def fresh(api: Api) -> None:
        [password] = _generated(caplog)
        first["password"] = password
        await api.login("admin", 401)
        token = await api.login(password)
        other = await api.login(password)
        await api.call("POST", "/v1/auth/password", 401, token=token,
                       json={"current_password": "wrong", "new_password": "a-new-long-one"})
        await api.call("POST", "/v1/auth/password", 422, token=token,
                       json={"current_password": password, "new_password": "password"})
        await api.call("POST", "/v1/auth/password", 204, token=token,
                       json={"current_password": password, "new_password": "a-new-long-one"})
        await api.call("GET", "/v1/auth/me", 200, token=token)  # the session that changed it lives on
        await api.call("GET", "/v1/auth/me", 401, token=other)  # every other one is revoked
        await api.login(password, 401)
        await api.login("a-new-long-one")

    await box.run(box.settings(), fresh)

    caplog.clear()

    async def restarted(api: Api) -> None:
        assert _generated(caplog) == []  # printed once, at the first start only
        await api.login("a-new-long-one")

    await box.run(box.settings(), restarted)

    async def configured(api: Api) -> None:  # a later FACESTREAM_API_ADMIN_PASSWORD is honoured
        await api.login("a-new-long-one", 401)
        await api.login("set-by-the-operator")
        root = await api.call("POST", "/v1/users", 201, json={"username": "root", "password": "root-password",
                                                               "role": "admin"})
        admin = [u for u in (await api.call("GET", "/v1/users", 200))["results"] if u["username"] == "admin"]
        await api.call("DELETE", f"/v1/users/{admin[0]['id']}", 204)
        assert root["role"] == "admin"

    await box.run(box.settings(admin_password="set-by-the-operator"), configured)

    caplog.clear()

    async def deleted(api: Api) -> None:  # deleting admin does not bring admin/admin (or any admin) back
        assert _generated(caplog) == []
        await api.login("admin", 401)
        await api.login("set-by-the-operator", 401)
        await api.login("root-password", user="root")

    await box.run(box.settings(), deleted)


async def test_default_credential_refused_beyond_loopback(tmp_path: Path) -> None:
    wide = {"host": "0.0.0.0"}
    assert await insecure_bind(Settings(data_dir=tmp_path, api={**wide, "admin_password": "admin"}))
    assert await insecure_bind(Settings(data_dir=tmp_path, api={**wide, "admin_password": "short"}))
    assert await insecure_bind(Settings(data_dir=tmp_path, api={"admin_password": "admin"})) is None  # loopback
    assert await insecure_bind(Settings(data_dir=tmp_path, api={**wide, "admin_password": "a-strong-one"})) is None
    # a data dir made when admin/admin was the default: refused beyond loopback until it is changed
    engine = await open_sql(Settings(data_dir=tmp_path))
    try:
        await UserRepository(engine).create("admin", hash_password("admin"), "admin")
    finally:
        await engine.dispose()
    refusal = await insecure_bind(Settings(data_dir=tmp_path, api=wide))
    assert refusal and "default password" in refusal


def test_cli_refuses_a_default_credential_beyond_loopback(tmp_path: Path) -> None:
    """`facestream up` says so in one line and starts nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    env["FACESTREAM_API_ADMIN_PASSWORD"] = "admin"
    done = subprocess.run([sys.executable, "-m", "ops.cli", "up", "--data-dir", str(tmp_path / "cli"),
                           "--api-host", "0.0.0.0"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 2, done
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refusing" in lines[0], lines
    assert not (tmp_path / "cli" / "broker.pid").exists()
