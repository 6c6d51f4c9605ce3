"""Base of every message: frozen, unknown fields refused, versioned.

Wire format: JSON (bytes fields as base64), except for messages that name ``blob_fields`` (frames and
faces): those travel as a compact binary envelope so their large bytes (a JPEG frame, a raw chip) are
neither base64-encoded nor parsed as JSON::

    b"FSB1" | u32 big-endian length of the metadata | metadata: the JSON of every other field
           | per blob field: u8 name length | name (ASCII) | u32 big-endian length | the raw bytes

The envelope is self-contained (a dead letter or a replay copies one record value), and a JSON record of
the same schema still decodes (``from_bytes`` and ``TopicSpec.decode`` accept both), so old records on a topic
stay readable.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, Self

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

ENVELOPE_MAGIC = b"FSB1"
_LENGTH = struct.Struct(">I")


class SchemaError(ValueError):
    """A message could not be decoded into its schema (a poison message)."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    blob_fields: ClassVar[tuple[str, ...]] = ()  # bytes fields carried raw in the binary envelope

    schema_version: int = 1

    def to_bytes(self) -> bytes:
        if not self.blob_fields:
            return self.model_dump_json().encode()
        meta = self.model_dump_json(exclude=set(self.blob_fields)).encode()
        parts = [ENVELOPE_MAGIC, _LENGTH.pack(len(meta)), meta]
        for name in self.blob_fields:
            blob: bytes = getattr(self, name)
            parts += [bytes((len(name),)), name.encode("ascii"), _LENGTH.pack(len(blob)), blob]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Self:
        if raw is None:
            raise SchemaError(f"{cls.__name__}: empty message")
        try:
            if is_envelope(raw):
                return cls.model_validate(open_envelope(raw))
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {exc}") from exc


def is_envelope(raw: bytes) -> bool:
    """True when ``raw`` is a binary envelope rather than JSON."""
    return raw[:4] == ENVELOPE_MAGIC


def open_envelope(raw: bytes) -> dict[str, Any]:
    """The fields of a binary envelope as a dict for ``model_validate`` (python mode): the metadata's
    fields plus each named blob. Raises ``SchemaError`` on a truncated or malformed envelope."""
    try:
        (meta_len,) = _LENGTH.unpack_from(raw, 4)
        pos = 8 + meta_len
        if pos > len(raw):
            raise SchemaError("binary envelope: metadata runs past the record")
        fields = orjson.loads(raw[8:pos])
        if not isinstance(fields, dict):
            raise SchemaError("binary envelope: metadata is not an object")
        while pos < len(raw):
            name_len = raw[pos]
            name = raw[pos + 1 : pos + 1 + name_len].decode("ascii")
            pos += 1 + name_len
            (size,) = _LENGTH.unpack_from(raw, pos)
            pos += 4
            if pos + size > len(raw):
                raise SchemaError(f"binary envelope: blob {name!r} runs past the record")
            fields[name] = raw[pos : pos + size]
            pos += size
    except (struct.error, IndexError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise SchemaError(f"binary envelope: {exc}") from exc
    return fields
