"""The media store: full frames, face thumbnails, aligned chips, dossier photos and uploaded videos.

Keys (see CONTRACTS.md): ``frames/{camera}/{frame_no}.jpg``, ``thumbs/{face_id}.jpg``, ``chips/{face_id}.jpg``,
``dossiers/{dossier_id}/{face_id}.jpg``, ``videos/{video_id}{ext}``. Keys are relative POSIX paths; ``..`` and
absolute paths are refused (``ValueError``). Methods are synchronous: call them in an executor from async code.

Backends: a local directory (``{data_dir}/media``) by default; an S3-compatible bucket when
``store.media_s3_url`` (``s3://bucket/prefix``) is set (``pip install boto3``; credentials from the usual
AWS environment variables; ``store.media_s3_endpoint`` for MinIO).
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote, urlparse

from pipeline.settings import Settings

MEDIA_URL_PREFIX = "/v1/media/"


class MediaNotFoundError(KeyError):
    """No object under that key."""


class MediaStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...
    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        """Store the file at ``path`` under ``key``, streamed (never whole in memory)."""
    def get(self, key: str) -> bytes: ...
    def get_file(self, key: str, path: Path) -> None:
        """Write the object under ``key`` to ``path``, streamed; ``MediaNotFoundError`` if absent."""
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def url_path(self, key: str) -> str: ...
    def local_path(self, key: str) -> Path | None: ...


def check_key(key: str) -> str:
    """``key`` if it is a safe relative POSIX path, else ``ValueError``."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key or key.endswith("/"):
        raise ValueError(f"invalid media key: {key!r}")
    return key


def url_path(key: str) -> str:
    """The API path serving ``key`` (``GET /v1/media/{key}``)."""
    return MEDIA_URL_PREFIX + quote(key, safe="/:")


def content_type_of(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class LocalMediaStore:
    """Files under ``root``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise MediaNotFoundError(key) from exc

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise MediaNotFoundError(key) from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url_path(self, key: str) -> str:
        return url_path(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class S3MediaStore:
    """Objects in an S3-compatible bucket under a prefix (boto3, imported lazily)."""

    def __init__(self, url: str, endpoint: str | None = None) -> None:
        try:
            import boto3
        except ImportError as exc:
            raise RuntimeError("an S3 media store needs boto3: pip install 'facestream[s3]'") from exc
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"media_s3_url must look like s3://bucket/prefix, not {url!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._s3: Any = boto3.client("s3", endpoint_url=endpoint)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        # boto3's managed transfer: parts of 8 MiB (multipart upload past that), read from the file as sent
        self._s3.upload_file(str(path), self.bucket, self._key(key), ExtraArgs={"ContentType": content_type})

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())
        except self._s3.exceptions.NoSuchKey as exc:
            raise MediaNotFoundError(key) from exc

    def get_file(self, key: str, path: Path) -> None:
        try:
            self._s3.download_file(self.bucket, self._key(key), str(path))
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise MediaNotFoundError(key) from exc
            raise

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._s3.exceptions.ClientError:  # 404
            return False
        return True

    def url_path(self, key: str) -> str:
        return url_path(key)

    def local_path(self, key: str) -> Path | None:
        return None


def open_media_store(settings: Settings) -> MediaStore:
    """The configured media store (local directory unless ``store.media_s3_url`` is set)."""
    if settings.store.media_s3_url:
        return S3MediaStore(settings.store.media_s3_url, settings.store.media_s3_endpoint)
    return LocalMediaStore(Path(settings.data_dir) / "media")
