"""Application errors: raised by services and selectors, rendered by one exception handler."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """An error the client can act on. Subclasses pin the HTTP status and the machine code."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        #: HTTP headers the error answer carries, e.g. Retry-After.
        self.headers = headers or {}
        if code is not None:
            self.code = code


class ValidationFailed(ApplicationError):
    status_code = 400
    code = "validation_error"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class IdempotencyKeyReused(ApplicationError):
    status_code = 422
    code = "idempotency_key_reused"


class RateLimited(ApplicationError):
    status_code = 429
    code = "rate_limited"


class RateLimitUnavailable(ApplicationError):
    """The rate-limit counters cannot be reached and the service is configured to fail closed."""

    status_code = 503
    code = "rate_limit_unavailable"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


class UnsupportedMediaType(ApplicationError):
    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "payload_too_large"
