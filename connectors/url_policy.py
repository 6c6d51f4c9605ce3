"""Who may be reached: the URL policy of webhook receivers and camera sources (``check_url``).

- Webhooks: ``http`` and ``https`` only, with a host.
- Cameras: ``rtsp``, ``rtsps``, ``http``, ``https``, a webcam index (digits), or a local file; a local file
  (a path, or ``file://``) only under ``api.media_root`` (unset: no local files), after resolving links.
  Every other scheme or FFmpeg protocol (``file:`` outside the root, ``concat:``, ``pipe:``, ``data:``,
  ``subfile:``...) is refused.
- Network targets: the host is resolved and every address must be global; loopback, private, link-local
  (cloud metadata at 169.254.169.254), unique-local, multicast and unspecified addresses are refused unless
  ``api.url_allow_private`` is set (tests, and deployments whose cameras live on a private network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pipeline.settings import Settings

Use = Literal["webhook", "camera"]
SCHEMES: dict[str, frozenset[str]] = {
    "webhook": frozenset({"http", "https"}),
    "camera": frozenset({"rtsp", "rtsps", "http", "https"}),
}
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}


class UrlPolicyError(ValueError):
    """The URL is not allowed for its use; the message says why (safe to show to the caller)."""


async def check_url(url: str, use: Use, settings: Settings) -> None:
    """Raise UrlPolicyError unless ``url`` may be used as a ``use`` target (see the module docstring)."""
    api = settings.api
    if use == "camera" and url.isdigit():
        return  # a local capture device index
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if use == "camera" and (scheme in ("", "file") or (len(scheme) == 1 and url[1:3] in (":\\", ":/"))):
        _check_local(unquote(parts.path) if scheme == "file" else url, api.media_root)
        return
    if scheme not in SCHEMES[use]:
        allowed = ", ".join(sorted(SCHEMES[use]))
        raise UrlPolicyError(f"scheme {scheme or '(none)'!r} is not allowed for a {use} (allowed: {allowed})")
    if not parts.hostname:
        raise UrlPolicyError(f"a {use} URL needs a host")
    if api.url_allow_private:
        return
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 80)
    except ValueError as exc:
        raise UrlPolicyError(f"bad port in {use} URL") from exc
    await _check_host(parts.hostname, port)


async def _check_host(host: str, port: int) -> None:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
        raise UrlPolicyError(f"cannot resolve {host!r}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise UrlPolicyError(f"{host!r} is an internal address ({address}): refused "
                                 "(api.url_allow_private allows it)")


def _check_local(path: str, root: Path | None) -> None:
    if root is None:
        raise UrlPolicyError("local files are not allowed as camera sources (set api.media_root)")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UrlPolicyError(f"local camera files must lie under api.media_root ({root})")


async def allowed(url: str | None, use: Use, settings: Settings) -> None:
    """``check_url`` for an API body field ``url`` (None: unchanged): a 422 ``forbidden_url`` naming it."""
    if url is None:
        return
    from connectors.api.errors import invalid  # the API's error type, only where the API calls this

    try:
        await check_url(url, use, settings)
    except UrlPolicyError as exc:
        raise invalid("url", str(exc), "forbidden_url") from exc
