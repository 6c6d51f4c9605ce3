"""Who may be reached: the URL policy of webhook receivers, camera sources, the Telegram Bot API and videos
fetched by URL (``check_url``), and the same address rule applied again when a connection is made
(``guarded_connector``).

- Webhooks, the Telegram base URL and videos by URL: ``http`` and ``https`` only, with a host.
- Cameras: ``rtsp``, ``rtsps``, ``http``, ``https``, a webcam index (digits), or a local file; a local file
  (a path, or ``file://``) only under ``api.media_root`` (unset: no local files), after resolving links.
  Every other scheme or FFmpeg protocol (``file:`` outside the root, ``concat:``, ``pipe:``, ``data:``,
  ``subfile:``...) is refused.
- Network targets: the host is resolved and every address must be global; loopback, private, link-local
  (cloud metadata at 169.254.169.254), unique-local, multicast and unspecified addresses are refused unless
  ``api.url_allow_private`` is set (``api.video_url_allow_private`` for videos by URL; tests, and deployments
  whose cameras live on a private network).

When the check runs: the API checks a URL when it is created or changed (422 ``forbidden_url``). A name can
resolve elsewhere later (DNS rebinding; a policy tightened since), so it is checked again where it is used:
webhook deliveries, Telegram calls and video fetches connect through ``guarded_connector``, which checks the
very address each socket connects to (nothing resolved twice, redirects included); the decoder re-checks a
camera's URL before every open (FFmpeg resolves the name again itself, so a rebinding faster than that
re-check is not caught for cameras).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp

from pipeline.settings import Settings

Use = Literal["webhook", "camera", "telegram", "video"]
WEB = frozenset({"http", "https"})
SCHEMES: dict[str, frozenset[str]] = {
    "webhook": WEB, "telegram": WEB, "video": WEB,
    "camera": frozenset({"rtsp", "rtsps", "http", "https"}),
}
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}


class UrlPolicyError(ValueError):
    """The URL is not allowed for its use; the message says why (safe to show to the caller)."""


class UnresolvableError(UrlPolicyError):
    """The URL's host did not resolve (now): nothing is known against it yet."""


class ForbiddenAddressError(ConnectionRefusedError):
    """A connection to an address the policy refuses was not made (raised inside ``guarded_connector``)."""


def allows_private(use: Use, settings: Settings) -> bool:
    """Whether ``use`` may target loopback, private and link-local addresses (the setting that says so)."""
    return settings.api.video_url_allow_private if use == "video" else settings.api.url_allow_private


async def check_url(url: str, use: Use, settings: Settings, executor: Executor | None = None) -> None:
    """Raise UrlPolicyError unless ``url`` may be used as a ``use`` target (see the module docstring).
    The host is resolved in ``executor`` (None: the loop's default executor)."""
    if use == "camera" and url.isdigit():
        return  # a local capture device index
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if use == "camera" and (scheme in ("", "file") or (len(scheme) == 1 and url[1:3] in (":\\", ":/"))):
        _check_local(unquote(parts.path) if scheme == "file" else url, settings.api.media_root)
        return
    if scheme not in SCHEMES[use]:
        allowed = ", ".join(sorted(SCHEMES[use]))
        raise UrlPolicyError(f"scheme {scheme or '(none)'!r} is not allowed for a {use} (allowed: {allowed})")
    if not parts.hostname:
        raise UrlPolicyError(f"a {use} URL needs a host")
    if allows_private(use, settings):
        return
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 80)
    except ValueError as exc:
        raise UrlPolicyError(f"bad port in {use} URL") from exc
    await _check_host(parts.hostname, port, executor)


def refusal(address: str) -> str | None:
    """Why a connection to the IP ``address`` is refused (None: a global unicast address, allowed)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return f"{ip} is an internal address: refused (api.url_allow_private allows it)"
    return None


async def _check_host(host: str, port: int, executor: Executor | None) -> None:
    resolve = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.get_running_loop().run_in_executor(executor, resolve)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
        raise UnresolvableError(f"cannot resolve {host!r}") from exc
    for info in infos:
        reason = refusal(str(info[4][0]))
        if reason:
            raise UrlPolicyError(f"{host!r}: {reason}")


def _check_local(path: str, root: Path | None) -> None:
    if root is None:
        raise UrlPolicyError("local files are not allowed as camera sources (set api.media_root)")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UrlPolicyError(f"local camera files must lie under api.media_root ({root})")


def _guarded_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's socket factory: called with the resolved address of every connection attempt."""
    family, type_, proto, _, sockaddr = addr_info
    reason = refusal(str(sockaddr[0]))
    if reason:
        raise ForbiddenAddressError(f"URL policy: {reason}")
    return socket.socket(family, type_, proto)


def guarded_connector(allow_private: bool) -> aiohttp.TCPConnector:
    """An aiohttp connector that refuses, at connect time, every address ``check_url`` would refuse (the
    address checked is the address connected to: no window for DNS rebinding, redirects checked too).
    A refused attempt fails like a refused connection (``aiohttp.ClientConnectorError``, its message starting
    ``URL policy:``). With ``allow_private`` it is a plain connector."""
    return aiohttp.TCPConnector() if allow_private else aiohttp.TCPConnector(socket_factory=_guarded_socket)


def is_refused(exc: BaseException) -> bool:
    """Whether an aiohttp error holds a connection the policy refused (see ``guarded_connector``; several
    refused addresses of one name come back as one combined ``OSError``)."""
    inner = getattr(exc, "os_error", None) or exc.__cause__ or exc
    return isinstance(inner, ForbiddenAddressError) or "URL policy:" in str(inner)


def refused_reason(exc: BaseException) -> str:
    """The message of a refused connection (``is_refused``), without aiohttp's wrapping."""
    return str(getattr(exc, "os_error", None) or exc.__cause__ or exc)


async def allowed(url: str | None, use: Use, settings: Settings) -> None:
    """``check_url`` for an API body field ``url`` (None: unchanged): a 422 ``forbidden_url`` naming it."""
    if url is None:
        return
    from connectors.api.errors import invalid  # the API's error type, only where the API calls this

    try:
        await check_url(url, use, settings)
    except UrlPolicyError as exc:
        raise invalid("url", str(exc), "forbidden_url") from exc
