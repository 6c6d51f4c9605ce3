"""Base of every message: frozen, unknown fields refused, versioned, JSON on the wire (bytes as base64)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError


class SchemaError(ValueError):
    """A message could not be decoded into its schema (a poison message)."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    schema_version: int = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Self:
        if raw is None:
            raise SchemaError(f"{cls.__name__}: empty message")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {exc}") from exc
