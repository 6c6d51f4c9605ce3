"""Telegram Bot API client: ``sendPhoto`` (multipart: chat_id, caption, photo JPEG) or ``sendMessage`` when
there is no photo. The base URL is configurable (a local Bot API server, or a fake one in tests) and goes
through the URL policy (``connectors.url_policy``: checked when the sink starts, and at every connection); the
token goes in the path as the Bot API requires (``{base}/bot{token}/sendPhoto``) and is never logged."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr

from connectors.http_session import HttpSessionClient
from connectors.url_policy import is_refused, refused_reason

CAPTION_MAX = 1024  # Bot API limit for photo captions


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retry_after: float | None = None  # 429: seconds Telegram asks to wait
    error: str | None = None
    permanent: bool = False  # 400/403/404: retrying will not help (bad chat, bot blocked)


class TelegramClient(HttpSessionClient):
    def __init__(self, base_url: str, token: SecretStr, timeout_s: float = 20.0, allow_private: bool = False) -> None:
        super().__init__(timeout_s, allow_private)
        self._base = base_url.rstrip("/")
        self._token = token

    def _url(self, method: str) -> str:
        return f"{self._base}/bot{self._token.get_secret_value()}/{method}"

    async def send_photo(self, chat_id: str, caption: str, photo: bytes | None) -> SendResult:
        """Send one message; never raises for HTTP or network failures."""
        try:
            if photo:
                form = aiohttp.FormData()
                form.add_field("chat_id", chat_id)
                form.add_field("caption", caption[:CAPTION_MAX])
                form.add_field("photo", photo, filename="face.jpg", content_type="image/jpeg")
                request = self.session.post(self._url("sendPhoto"), data=form)
            else:
                request = self.session.post(self._url("sendMessage"), json={"chat_id": chat_id, "text": caption})
            async with request as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = {}
                return _result(resp.status, body if isinstance(body, dict) else {})
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if is_refused(exc):  # the base URL's name resolves to an internal address
                return SendResult(False, error=refused_reason(exc)[:300], permanent=True)
            return SendResult(False, error=f"{type(exc).__name__}: {exc}"[:300])


def _result(status: int, body: dict) -> SendResult:
    if status == 200 and body.get("ok"):
        return SendResult(True)
    description = str(body.get("description", f"HTTP {status}"))[:300]
    if status == 429:
        retry = (body.get("parameters") or {}).get("retry_after", 1)
        return SendResult(False, retry_after=float(retry), error=description)
    return SendResult(False, error=description, permanent=status in (400, 403, 404))
