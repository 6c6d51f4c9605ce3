"""An async client of facestream's own query API, for face plug-ins (``agents.face_plugins.PluginContext.api``).

It speaks the API's JSON: ``await api.get("/v1/dossiers", params={"limit": 10})`` returns the decoded body;
an answer outside 2xx raises :class:`ApiClientError` with the status and the API's error message (its
``error.message``), and a transport failure raises it with status 0. The token goes as ``Authorization:
Token <token>``. One ``aiohttp`` session, opened on first use; :meth:`close` releases it.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from connectors.http_session import HttpSessionClient


class ApiClientError(RuntimeError):
    """A call to the API failed: ``status`` is the HTTP status (0: no answer), ``message`` the API's reason."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status or 'no answer'} {message}")
        self.status = status
        self.message = message


class ApiClient(HttpSessionClient):
    def __init__(self, base_url: str, token: str | None, timeout_s: float = 10.0) -> None:
        # the operator's own API (plugins.api_url: loopback, a private or cluster address), never a URL an API
        # user supplied: the URL policy's private-address refusal does not apply
        super().__init__(timeout_s, allow_private=True)
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Token {token}"} if token else {}

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, str | int | float] | None = None) -> Any:
        """The decoded JSON answer (None for 204); raises :class:`ApiClientError`."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            async with self.session.request(method, url, json=json, params=params, headers=self._headers) as resp:
                body: Any = await resp.json() if resp.content_type == "application/json" else await resp.read()
                if resp.status >= 300:
                    raise ApiClientError(method, path, resp.status, _reason(body))
                return None if resp.status == 204 else body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiClientError(method, path, 0, f"{type(exc).__name__}: {exc}") from exc

    async def get(self, path: str, params: dict[str, str | int | float] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Any:
        return await self.request("POST", path, json=json)

    async def patch(self, path: str, json: Any = None) -> Any:
        return await self.request("PATCH", path, json=json)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return body[:300].decode(errors="replace") if isinstance(body, bytes) else str(body)[:300]
