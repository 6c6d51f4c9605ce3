"""Is a network camera answering at all? An asyncio probe run before the blocking open (``probe_stream``).

Why: OpenCV's FFmpeg backend opens sources one at a time per process (a global lock around the open), so a
source that accepts a connection and never answers (a tarpit, a hung camera) holds every other open in the
decoder (cameras reconnecting, video files) for the whole ``decoder.open_timeout_s``, and one of its threads
with it. The probe connects, sends one request (``OPTIONS`` for RTSP, ``GET`` for HTTP; TLS for ``rtsps`` and
``https``, unverified like FFmpeg's default) and waits for the first line of any answer (``RTSP/...`` or
``HTTP/...``, whatever the status: authentication errors are FFmpeg's to report), on the event loop, within
the timeout. Only a source that answers goes on to the blocking open. A server that answers the probe and
then stalls is still bounded by FFmpeg's own open timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from concurrent.futures import Executor
from urllib.parse import urlsplit

PROBED = {"rtsp": (554, False, b"RTSP/"), "rtsps": (322, True, b"RTSP/"),
          "http": (80, False, b"HTTP/"), "https": (443, True, b"HTTP/")}


class ProbeError(OSError):
    """The source did not answer the probe; the message says how (no URL, no credentials in it)."""


def probed(url: str) -> bool:
    """Whether ``url`` is a network source the probe knows (rtsp, rtsps, http, https)."""
    return urlsplit(url).scheme.lower() in PROBED


async def probe_stream(url: str, timeout_s: float, executor: Executor | None = None) -> None:
    """Raise ProbeError unless the server of ``url`` answers one request within ``timeout_s`` seconds.
    The host name is resolved in ``executor`` (None: the loop's default executor)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default_port, tls, answer = PROBED[scheme]
    host = parts.hostname or ""
    deadline = time.monotonic() + timeout_s
    try:
        port = parts.port or default_port
        resolve = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(executor, resolve), timeout_s)
        reader, writer = await _connect(list(dict.fromkeys(str(i[4][0]) for i in infos)), port,
                                        host if tls else None, deadline)
    except TimeoutError:
        raise ProbeError(f"no connection within {timeout_s:g} s") from None
    except (OSError, ValueError, UnicodeError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot connect: {type(exc).__name__}") from exc
    try:
        writer.write(_request(scheme, parts.netloc.rsplit("@", 1)[-1], parts.path or "/", parts.query))
        await writer.drain()
        first = await asyncio.wait_for(reader.readline(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise ProbeError(f"connected, but no answer within {timeout_s:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"connection failed: {type(exc).__name__}") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    if not first.startswith(answer):
        raise ProbeError(f"not an {answer.decode().rstrip('/')} server (answered {first[:32]!r})")


async def _connect(addresses: list[str], port: int, tls_host: str | None,
                   deadline: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the first of ``addresses`` that accepts one (as FFmpeg tries them in turn)."""
    context = _unverified() if tls_host is not None else None
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return await asyncio.wait_for(asyncio.open_connection(
                address, port, ssl=context, server_hostname=tls_host), deadline - time.monotonic())
        except (OSError, ssl.SSLError) as exc:
            if isinstance(exc, TimeoutError):
                raise
            error = exc
    raise error


def _request(scheme: str, netloc: str, path: str, query: str) -> bytes:
    target = path + (f"?{query}" if query else "")
    if scheme.startswith("rtsp"):  # the URL without credentials; any answer, 401 included, counts
        return (f"OPTIONS {scheme}://{netloc}{target} RTSP/1.0\r\nCSeq: 1\r\n"
                "User-Agent: facestream-probe\r\n\r\n").encode()
    return (f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: facestream-probe\r\n"
            "Connection: close\r\n\r\n").encode()


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
