"""One DRF exception handler renders every API error in the envelope
``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.database import database_unavailable_body, database_unavailable_headers, is_database_unavailable
from core.errors import ApplicationError, error_body

logger = logging.getLogger(__name__)

_DRF_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.NotAuthenticated: "authentication_required",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "validation_error",
}


def _drf_code(exc: exceptions.APIException) -> str:
    # A code given where the error was raised (``AuthenticationFailed(..., code="invalid_api_key")``)
    # wins over the class's generic one.
    explicit = getattr(exc.detail, "code", None)
    if explicit and explicit != exc.default_code:
        return explicit
    for cls in type(exc).__mro__:
        if cls in _DRF_CODES:
            return _DRF_CODES[cls]
    return "error"


def validation_summary(details: Any) -> str:
    """A one-line summary of DRF validation details, e.g. ``to: This field is required.``"""
    if isinstance(details, dict):
        for field, problems in details.items():
            first = problems[0] if isinstance(problems, list) and problems else problems
            if isinstance(first, dict | list):
                first = validation_summary(first)
            label = "request" if field == "non_field_errors" else field
            return f"{label}: {first}"
    if isinstance(details, list) and details:
        return str(details[0])
    return "The request is invalid."


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_database_unavailable(exc):
        request = context.get("request")
        logger.warning(
            "Database unavailable on %s %s: %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
            str(exc).strip()[:200],
        )
        return Response(database_unavailable_body(), status=503, headers=database_unavailable_headers())
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=exc.headers or None
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if not isinstance(exc, exceptions.APIException):
        return None  # unexpected: JsonErrorMiddleware logs it and answers a 500 envelope

    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body("validation_error", validation_summary(details), details)
    else:
        body = error_body(_drf_code(exc), str(exc.detail))
    headers = {}
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(int(wait))
    return Response(body, status=exc.status_code, headers=headers)
