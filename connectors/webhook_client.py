"""HTTP client of the webhook sink: one signed POST per delivery attempt; signature helpers for receivers.

Signature: ``X-Facestream-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``; the delivery id (the same
on every retry of a delivery) is in ``X-Facestream-Delivery``. The payload format is documented in
``agents/notify_rules.py``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import aiohttp

from connectors.http_session import HttpSessionClient

SIGNATURE_HEADER = "X-Facestream-Signature"
DELIVERY_HEADER = "X-Facestream-Delivery"


def sign(body: bytes, secret: str) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """Whether ``header`` is the valid signature of ``body`` under ``secret`` (constant time)."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


@dataclass(frozen=True)
class Attempt:
    ok: bool  # 2xx
    http_status: int | None
    error: str | None


class WebhookClient(HttpSessionClient):
    """One aiohttp session for every webhook. Use ``async with`` or call :meth:`close`."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        super().__init__(timeout_s)

    async def post(self, url: str, body: bytes, secret: str, delivery_id: str) -> Attempt:
        """POST ``body`` (a JSON array); never raises for HTTP or network failures."""
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id,
                   "User-Agent": "facestream-webhooks/1"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        try:
            async with self.session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                return Attempt(ok, resp.status, None if ok else f"HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
