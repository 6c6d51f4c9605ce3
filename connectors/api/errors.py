"""API errors: every answer other than success is an ``ApiError``, sent as
``{"error": {"code", "message", "details"}}`` (``schemas.api.ErrorBody``) with its HTTP status."""

from __future__ import annotations

from typing import Any

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid", 429: "too_many_requests", 500: "internal", 503: "unavailable"}


class ApiError(Exception):
    """An answer other than success: ``status``, a human ``message``, a machine ``code`` (default from the
    status), ``fields`` (each ``{"loc", "msg"}``), sent as the error's ``details``, and response ``headers``
    (``Retry-After``)."""

    def __init__(self, status: int, message: str, fields: list[dict[str, Any]] | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers
        self.status = status
        self.message = message
        self.fields = fields
        self.code = code or ERROR_CODES.get(status, "error")


def invalid(field_name: str, message: str, code: str = "invalid") -> ApiError:
    """A 422 naming one field."""
    return ApiError(422, f"{field_name}: {message}", [{"loc": [field_name], "msg": message}], code)


def error_payload(status: int, message: str, details: list[dict[str, Any]] | None = None,
                  code: str | None = None) -> dict[str, Any]:
    """The body of every error answer (``schemas.api.ErrorBody``)."""
    return {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message, "details": details}}
