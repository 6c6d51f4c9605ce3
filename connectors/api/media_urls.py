"""Short-lived signed media URLs: ``/v1/media/<key>?expires=<unix s>&sig=<HMAC>``.

The API answers thumbnails, frames and dossier photos as such URLs, so an ``<img src>`` needs no token in
its query string (tokens in URLs end up in logs, histories and Referer headers). The signature is
HMAC-SHA256 over the media key and the expiry, under ``api.media_url_secret`` (or a key generated once and
kept in the SQL store); an expired or altered URL answers 403. Expiry times are rounded up to a tenth of
``api.media_url_ttl_s``, so repeated answers within that step carry the same URL and browsers can cache it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time

from connectors.media import url_path


class MediaUrlError(ValueError):
    """A signed media URL that is expired, altered or for another key (403)."""


class MediaUrlSigner:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._key: bytes | None = None

    def set_key(self, key: str) -> None:
        self._key = key.encode()

    def url(self, key: str) -> str:
        """The signed API path of the stored object ``key``, valid for ``ttl_s`` (to a tenth more)."""
        step = max(1, int(self.ttl_s // 10))
        expires = math.ceil((time.time() + self.ttl_s) / step) * step
        return f"{url_path(key)}?expires={expires}&sig={self._sign(key, expires)}"

    def check(self, key: str, expires: str | None, sig: str | None) -> float:
        """Seconds the URL stays valid; ``MediaUrlError`` when it is not valid now."""
        if not expires or not sig or not expires.isdigit() or len(expires) > 12:
            raise MediaUrlError("a signed media URL needs `expires` and `sig`")
        if not hmac.compare_digest(sig.encode(), self._sign(key, int(expires)).encode()):
            raise MediaUrlError("the media URL's signature does not match (altered?)")
        left = int(expires) - time.time()
        if left <= 0:
            raise MediaUrlError("the media URL has expired: read the resource again for a fresh one")
        return left

    def _sign(self, key: str, expires: int) -> str:
        if self._key is None:
            raise RuntimeError("media URL signer used before its key was loaded (API start-up)")
        mac = hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
