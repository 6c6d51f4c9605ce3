"""A lazily opened aiohttp session shared by the outbound HTTP clients (webhooks, Telegram); every connection
goes through the URL policy's connect-time address check (``connectors.url_policy.guarded_connector``)."""

from __future__ import annotations

from typing import Self

import aiohttp

from connectors.url_policy import guarded_connector


class HttpSessionClient:
    """Owns one ``aiohttp.ClientSession``, opened on first use. Use ``async with`` or call :meth:`close`.
    Connections to loopback, private and link-local addresses are refused unless ``allow_private``."""

    def __init__(self, timeout_s: float, allow_private: bool = False) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  connector=guarded_connector(self._allow_private))
        return self._session

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
