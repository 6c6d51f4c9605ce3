"""HTTP client of the webhook sink: one signed POST per delivery attempt, the Standard Webhooks way
(https://www.standardwebhooks.com); signature helpers for receivers.

Headers of every attempt:

- ``webhook-id``: the delivery id, the same on every retry of a delivery (receivers drop duplicates by it);
- ``webhook-timestamp``: UNIX seconds of this attempt (receivers refuse stale ones: no replays);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>``, absent
  when the webhook has no secret. The key is the secret's base64 part for a ``whsec_...`` secret (what any
  Standard Webhooks library takes as it is), else the secret's UTF-8 bytes (give those bytes to the library).

The payload format is documented in ``agents/notify_rules.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from connectors.http_session import HttpSessionClient
from connectors.url_policy import is_refused, refused_reason

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret (see the module docstring)."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):] + "==")
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """The ``webhook-signature`` value of ``body`` sent as ``msg_id`` at ``timestamp``."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(body: bytes, secret: str, headers: Mapping[str, str], now: float | None = None) -> bool:
    """Whether ``headers`` carry a valid, fresh (within 5 minutes) signature of ``body`` (constant time)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = lower.get(ID_HEADER), lower.get(TIMESTAMP_HEADER), lower.get(SIGNATURE_HEADER)
    if not (msg_id and stamp and signatures) or not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > TOLERANCE_S:
        return False
    expected = sign(msg_id, int(stamp), body, secret)
    return any(hmac.compare_digest(expected, s) for s in signatures.split(" "))


@dataclass(frozen=True)
class Attempt:
    ok: bool  # 2xx
    http_status: int | None
    error: str | None


class WebhookClient(HttpSessionClient):
    """One aiohttp session for every webhook. Use ``async with`` or call :meth:`close`."""

    def __init__(self, timeout_s: float = 10.0, allow_private: bool = False) -> None:
        super().__init__(timeout_s, allow_private)

    async def post(self, url: str, body: bytes, secret: str, delivery_id: str) -> Attempt:
        """POST ``body`` (a JSON array); never raises for HTTP or network failures."""
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", ID_HEADER: delivery_id, TIMESTAMP_HEADER: str(stamp),
                   "User-Agent": "facestream-webhooks/1"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(delivery_id, stamp, body, secret)
        try:
            async with self.session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                return Attempt(ok, resp.status, None if ok else f"HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if is_refused(exc):  # the receiver's name resolves to an internal address now (DNS rebinding)
                return Attempt(False, None, refused_reason(exc)[:500])
            return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
