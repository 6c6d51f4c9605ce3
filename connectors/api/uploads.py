"""Multipart uploads: bounded reading (413 past the limit), image decoding with clear refusals.

Images: the format is sniffed from the magic bytes (unknown -> 415), the pixel count is read from the header
from the header of every accepted format (PNG, JPEG, GIF, BMP, WebP, TIFF) before decoding (-> 413; a header
that does not state it -> 400, nothing is decoded blind), then OpenCV decodes to a BGR uint8 array (failure ->
400 corrupt).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from aiohttp import BodyPartReader, MultipartReader, web

from connectors.api.errors import ApiError

CHUNK = 256 * 1024
MAX_FORM_FIELD = 64 * 1024  # bytes of one text field of a multipart form


@dataclass(frozen=True)
class Upload:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    fields: dict[str, str]  # the last value of each text field
    files: dict[str, Upload]
    lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each text field, in order

    def file(self, name: str) -> Upload:
        upload = self.files.get(name)
        if upload is None:
            raise ApiError(422, f"{name}: a file field is required", [{"loc": [name], "msg": "field required"}])
        return upload


def _check_multipart(request: web.Request) -> None:
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, "expected multipart/form-data")


async def _multipart(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except ValueError as exc:  # no boundary, or a malformed Content-Type
        raise ApiError(400, f"malformed multipart body: {exc}") from exc


async def _next_part(reader: MultipartReader) -> object | None:
    try:
        return await reader.next()
    except (ValueError, AssertionError) as exc:  # aiohttp: bad delimiters or part headers
        raise ApiError(400, f"malformed multipart body: {exc}") from exc


def _check_length(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, f"upload larger than the limit of {limit} bytes")


async def read_form(request: web.Request, max_file_bytes: int, max_files: int = 4) -> Form:
    """Read a whole multipart form into memory; every file at most ``max_file_bytes`` (413 beyond)."""
    _check_multipart(request)
    _check_length(request, max_file_bytes * max_files)
    reader = await _multipart(request)
    form = Form({}, {})
    while (part := await _next_part(reader)) is not None:
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        if part.filename is None:
            value = (await _read_limited(part, MAX_FORM_FIELD)).decode("utf-8", "replace")
            form.fields[part.name] = value
            form.lists.setdefault(part.name, []).append(value)
            continue
        if len(form.files) >= max_files:
            raise ApiError(422, "too many files in the form")
        data = await _read_limited(part, max_file_bytes)
        form.files[part.name] = Upload(part.name, part.filename, part.headers.get("Content-Type", ""), data)
    return form


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"{part.name}: larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def stream_file_field(request: web.Request, field_name: str, out: BinaryIO, limit: int
                            ) -> tuple[str, dict[str, str]]:
    """Stream the file field ``field_name`` into ``out`` (at most ``limit`` bytes, 413 beyond); returns its
    file name and the form's text fields. Raises 422 when the field is missing."""
    _check_multipart(request)
    _check_length(request, limit)
    reader = await _multipart(request)
    filename: str | None = None
    fields: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    while (part := await _next_part(reader)) is not None:
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        if part.filename is None:
            fields[part.name] = (await _read_limited(part, MAX_FORM_FIELD)).decode("utf-8", "replace")
            continue
        if part.name != field_name or filename is not None:
            await part.release()
            continue
        filename, size = part.filename or "upload", 0
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"{field_name}: larger than the limit of {limit} bytes")
            await loop.run_in_executor(None, out.write, chunk)
    if filename is None:
        raise ApiError(422, f"{field_name}: a file field is required", [{"loc": [field_name], "msg": "field required"}])
    return filename, fields


# --- images -------------------------------------------------------------------------------------------------

def sniff_image(data: bytes) -> str | None:
    """The image format from the magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding, or None when the header does not say (the
    upload is then refused: nothing is decoded whose size is unknown). WebP: the largest of the canvas
    (VP8X) and every image chunk (VP8, VP8L); TIFF: the first directory (the page OpenCV decodes)."""
    try:
        if fmt == "png":
            return _nonzero(struct.unpack(">II", data[16:24]))
        if fmt == "gif":
            return _nonzero(struct.unpack("<HH", data[6:10]))
        if fmt == "bmp":
            return _bmp_size(data)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "tiff":
            return _tiff_size(data)
    except (struct.error, IndexError):
        return None
    return None


def _nonzero(size: tuple[int, int]) -> tuple[int, int] | None:
    return size if size[0] > 0 and size[1] > 0 else None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if struct.unpack("<I", data[14:18])[0] == 12:  # BITMAPCOREHEADER: 16-bit dimensions
        return _nonzero(struct.unpack("<HH", data[18:22]))
    w, h = struct.unpack("<ii", data[18:26])
    return _nonzero((abs(w), abs(h)))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return _nonzero((w, h))
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    i = 12
    while i + 8 <= len(data):
        fourcc, length = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        body = data[i + 8:i + 8 + length]
        size: tuple[int, int] | None = None
        if fourcc == b"VP8X" and len(body) >= 10:
            size = (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1)
        elif fourcc == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", body[6:10])
            size = (w & 0x3FFF, h & 0x3FFF)
        elif fourcc == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = struct.unpack("<I", body[1:5])[0]
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if size is not None and (best is None or size[0] * size[1] > best[0] * best[1]):
            best = size
        i += 8 + length + (length & 1)
    return _nonzero(best) if best else None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset:offset + 2])[0]
    dims: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k:offset + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = {3: "H", 4: "I"}.get(kind)
            if fmt is None:
                return None
            dims[tag] = struct.unpack(order + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
    if 256 not in dims or 257 not in dims:
        return None
    return _nonzero((dims[256], dims[257]))


def decode_image(data: bytes, max_pixels: int, field_name: str = "photo") -> np.ndarray:
    """BGR uint8 image (H, W, 3) from uploaded bytes; ApiError 400 (empty, corrupt), 415 (not an image),
    413 (more than ``max_pixels``). Synchronous: call it in an executor."""
    if not data:
        raise ApiError(400, f"{field_name}: the upload is empty")
    fmt = sniff_image(data)
    if fmt is None:
        raise ApiError(415, f"{field_name}: not an image (supported: JPEG, PNG, GIF, BMP, WebP, TIFF)")
    size = header_size(data, fmt)
    if size is None:
        raise ApiError(400, f"{field_name}: the {fmt.upper()} header does not state the image size (corrupt?)")
    if size[0] * size[1] > max_pixels:
        raise ApiError(413, f"{field_name}: {size[0]}x{size[1]} is more than {max_pixels} pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ApiError(400, f"{field_name}: the {fmt.upper()} image is corrupt or truncated")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ApiError(413, f"{field_name}: {image.shape[1]}x{image.shape[0]} is more than {max_pixels} pixels")
    return image


VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv",
                              ".wmv", ".3gp"})


def probe_video(path: Path) -> int:
    """Frame count of a readable video (>= 1), or ApiError 415. Synchronous."""
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok or frame is None:
            raise ApiError(415, "file: not a readable video")
        return max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 1))
    finally:
        capture.release()
