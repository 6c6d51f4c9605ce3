"""Pure parts of the API: image sniffing and header sizes, decode refusals, the OpenAPI document, cursors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from connectors.api.core import ApiError
from connectors.api.openapi import openapi_document
from connectors.api.uploads import decode_image, header_size, sniff_image
from connectors.sql.base import InvalidCursorError, decode_cursor, encode_cursor
from schemas.api import CameraIn, WatchListIn


def _encoded(ext: str, w: int = 37, h: int = 21) -> bytes:
    return cv2.imencode(ext, np.zeros((h, w, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize(("ext", "fmt"), [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp")])
def test_sniff_and_header_size(ext: str, fmt: str) -> None:
    data = _encoded(ext)
    assert sniff_image(data) == fmt
    assert header_size(data, fmt) == (37, 21)


def test_decode_refusals() -> None:
    assert decode_image(_encoded(".png"), 10_000).shape == (21, 37, 3)
    for data, status in ((b"", 400), (b"GIF", 415), (b"%PDF-1.4", 415), (_encoded(".jpg")[:40], 400),
                         (_encoded(".png", 200, 200), 413)):
        with pytest.raises(ApiError) as err:
            decode_image(data, 10_000)
        assert err.value.status == status


def test_cursor_roundtrip() -> None:
    assert decode_cursor(encode_cursor([1.5, "abc"])) == [1.5, "abc"]
    with pytest.raises(InvalidCursorError):
        decode_cursor("not-base64!!")


def test_bodies_validate() -> None:
    with pytest.raises(ValidationError):
        CameraIn(name="c", url="0", roi=[(0, 0), (1, 1)])
    with pytest.raises(ValidationError):
        WatchListIn(name="w", color="blue")
    assert WatchListIn(name="w").camera_groups == []


def test_openapi_document_covers_routes() -> None:
    from connectors.api.app import _route_tables

    routes = [r for t in _route_tables() for r in t.routes]
    doc = openapi_document(routes)
    assert doc["openapi"].startswith("3.")
    op = doc["paths"]["/v1/dossiers/{id}/faces"]["post"]
    assert "multipart/form-data" in op["requestBody"]["content"] and "422" in op["responses"]
    events = doc["paths"]["/v1/events"]["get"]
    assert {"camera", "watch_list", "since", "min_confidence", "cursor"} <= {p["name"] for p in events["parameters"]}
    assert "/v1/media/{key}" in doc["paths"]
    media = doc["paths"]["/v1/media/{key}"]["get"]  # signed URLs stand in for the token; no token parameter
    assert {"expires", "sig"} <= {p["name"] for p in media["parameters"]} and {} in media["security"]
    assert "token" not in {p["name"] for p in media["parameters"]}
    assert "token" in {p["name"] for p in doc["paths"]["/v1/ws/events"]["get"]["parameters"]}
    assert "Retry-After" in doc["paths"]["/v1/auth/login"]["post"]["responses"]["429"]["headers"]
    assert "/v1/auth/refresh" in doc["paths"]
    assert doc["paths"]["/v1/health"]["get"].get("security") is None
