"""Fetching a video given by URL (``POST /v1/videos/from-url``): http(s) only, streamed to a file with the
upload size limit, and, unless ``api.video_url_allow_private`` is set, never to a loopback, private,
link-local or otherwise internal address (the API must not become a way into the internal network). The
address is checked when the connection is made (``connectors.url_policy.guarded_connector``): the address
checked is the one connected to, so a name that resolves to an internal address is refused whenever it does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from connectors.api.errors import ApiError, invalid
from connectors.url_policy import guarded_connector, is_refused
from pipeline.settings import Settings

CHUNK = 256 * 1024
TIMEOUT_S = 60.0


async def fetch_video(settings: Settings, url: str, out: Path) -> str:
    """Download ``url`` into ``out``; returns the file name (from the URL path). 422 for a URL it will not
    fetch or that answers an error, 413 past ``api.max_video_bytes``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("url", "expected an http(s) URL with a host")
    limit = settings.api.max_video_bytes
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    connector = guarded_connector(settings.api.video_url_allow_private)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
                session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise invalid("url", f"the server answered HTTP {resp.status}", "fetch_failed")
            if resp.content_length is not None and resp.content_length > limit:
                raise ApiError(413, f"url: the video is larger than the limit of {limit} bytes")
            size = 0
            with open(out, "wb") as f:  # noqa: ASYNC230 - writes go through the executor
                async for chunk in resp.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, f"url: the video is larger than the limit of {limit} bytes")
                    await loop.run_in_executor(None, f.write, chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        if is_refused(exc):
            raise invalid("url", f"{parts.hostname!r} is an internal address; not fetched "
                                 "(api.video_url_allow_private allows it)", "forbidden_url") from exc
        raise invalid("url", f"could not fetch it: {type(exc).__name__}", "fetch_failed") from exc
    return Path(unquote(parts.path)).name or "video"
