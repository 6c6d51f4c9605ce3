"""POST /v1/videos/from-url fetches only public http(s) addresses unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.api.errors import ApiError
from connectors.api.video_urls import fetch_video
from pipeline.settings import Settings


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x.mp4", "http://[::1]/x.mp4", "http://169.254.169.254/latest",
                                 "http://10.0.0.5/x.mp4", "http://localhost/x.mp4"])
async def test_internal_addresses_are_not_fetched(tmp_path: Path, url: str) -> None:
    with pytest.raises(ApiError) as err:
        await fetch_video(Settings(data_dir=tmp_path), url, tmp_path / "out")
    assert err.value.status == 422 and err.value.code == "forbidden_url"
    assert not (tmp_path / "out").exists()


async def test_other_schemes_are_refused(tmp_path: Path) -> None:
    for url in ("ftp://example.com/x.mp4", "http:///x.mp4"):
        with pytest.raises(ApiError):
            await fetch_video(Settings(data_dir=tmp_path), url, tmp_path / "out")


async def test_the_address_is_checked_when_connecting(tmp_path: Path) -> None:
    """A real server on loopback reached by a name (``localhost``): refused at connect time unless internal
    addresses are allowed, and then fetched. The check is on the address connected to, so a name that
    resolved to a public address a moment earlier (DNS rebinding) cannot slip through."""
    from aiohttp import web

    hits: list[str] = []

    async def clip(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"\x00" * 100)

    app = web.Application()
    app.router.add_get("/clip.mp4", clip)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://localhost:{port}/clip.mp4"
        with pytest.raises(ApiError) as err:
            await fetch_video(Settings(data_dir=tmp_path), url, tmp_path / "out")
        assert err.value.code == "forbidden_url" and "internal address" in str(err.value)
        assert hits == [] and not (tmp_path / "out").exists()
        allowed = Settings(data_dir=tmp_path, api={"video_url_allow_private": True})
        assert await fetch_video(allowed, url, tmp_path / "out") == "clip.mp4"
        assert hits == ["/clip.mp4"] and (tmp_path / "out").stat().st_size == 100
    finally:
        await runner.cleanup()
