"""A lazily opened aiohttp session shared by the outbound HTTP clients (webhooks, Telegram)."""

from __future__ import annotations

from typing import Self

import aiohttp


class HttpSessionClient:
    """Owns one ``aiohttp.ClientSession``, opened on first use. Use ``async with`` or call :meth:`close`."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
