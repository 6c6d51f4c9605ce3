"""Base of every message: frozen, unknown fields refused, versioned.

Wire format: JSON (bytes fields as base64), except for messages that name ``blob_fields`` (frames and
faces): those travel as a compact binary envelope so their large bytes (a JPEG frame, a raw chip) are
neither base64-encoded nor parsed as JSON::

    b"FSB1" | u32 big-endian length of the metadata | metadata: the JSON of every other field
           | per blob field: u8 name length | name (ASCII) | u32 big-endian length | the raw bytes

The envelope is self-contained (a dead letter or a replay copies one record value), and a JSON record of
the same schema still decodes (``from_bytes`` and ``TopicSpec.decode`` accept both), so old records on a topic
stay readable.

Versions (rolling upgrades): every message carries ``schema_version`` "MAJOR.MINOR" (``SCHEMA_VERSION``; an
integer N from older producers reads as "N.0"). A minor version only adds optional fields; a major one
changes or removes fields. A consumer decoding a record of its own major and a newer minor ignores the fields
it does not know (at any depth); a record of a newer major is refused with a ``SchemaError`` that says so
(stages dead-letter it with that reason); a record of the same or an older minor keeps the strict rule:
unknown fields are an error (a typo or a corrupt record, never a newer producer).
"""

from __future__ import annotations

import struct
import types
import typing
from typing import Any, ClassVar, Self

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

ENVELOPE_MAGIC = b"FSB1"
_LENGTH = struct.Struct(">I")
SCHEMA_MAJOR, SCHEMA_MINOR = 1, 0
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"


class SchemaError(ValueError):
    """A message could not be decoded into its schema (a poison message)."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    blob_fields: ClassVar[tuple[str, ...]] = ()  # bytes fields carried raw in the binary envelope

    schema_version: str = SCHEMA_VERSION  # "MAJOR.MINOR", see the module docstring

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value}.0"  # producers before versions had minors sent an integer major
        return value

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
                return cls.model_validate(compatible(cls, open_envelope(raw)))
            return cls.model_validate_json(compatible_json(cls, raw))
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {exc}") from exc


def parse_version(value: object) -> tuple[int, int]:
    """(major, minor) of a record's ``schema_version`` (absent: the first version, 1.0)."""
    if value is None:
        return 1, 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value, 0
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        if major.isdigit() and (minor.isdigit() or not minor):
            return int(major), int(minor or 0)
    raise SchemaError(f"schema_version {value!r} is not MAJOR.MINOR")


def compatible(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as this consumer can validate them (see the module docstring): unchanged for its own
    minor or older, without unknown fields for a newer minor; ``SchemaError`` for a newer major."""
    major, minor = parse_version(fields.get("schema_version"))
    if major > SCHEMA_MAJOR:
        raise SchemaError(f"{model.__name__}: schema_version {major}.{minor} is a newer major version than this "
                          f"consumer's {SCHEMA_VERSION}: upgrade this stage to read it")
    if major == SCHEMA_MAJOR and minor > SCHEMA_MINOR:
        return _known_only(model, fields)
    return fields


def compatible_json(model: type[BaseModel], raw: bytes) -> bytes:
    """``compatible`` for a JSON record: the record itself unless fields had to be dropped."""
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # pydantic says what is wrong with it
    if not isinstance(fields, dict):
        return raw
    kept = compatible(model, fields)
    return raw if kept is fields else orjson.dumps(kept)


def _known_only(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        info = model.model_fields.get(name)
        if info is None:
            continue  # added by a newer minor version
        sub = _model_in(info.annotation)
        if sub is not None and isinstance(value, dict):
            value = _known_only(sub, value)
        elif sub is not None and isinstance(value, list):
            value = [_known_only(sub, v) if isinstance(v, dict) else v for v in value]
        out[name] = value
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model an annotation holds (``M``, ``M | None``, ``list[M]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated):
        found = {m for arg in typing.get_args(annotation) if (m := _model_in(arg)) is not None}
        return found.pop() if len(found) == 1 else None
    return None


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
