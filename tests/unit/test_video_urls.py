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
