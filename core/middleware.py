"""Middleware that keeps every answer of the API in the JSON error envelope."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.database import database_unavailable_response, is_database_unavailable
from core.errors import error_body
from core.logging import log_context, log_line, request_id_from
from core.metrics import record_request

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("requests")


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None and match.view_name else "unmatched"


def _api_key_prefix(request: HttpRequest) -> str | None:
    # Set by DRF on the Django request once a key authenticated; only its recognisable prefix.
    return getattr(getattr(request, "auth", None), "prefix", None)


class RequestLogMiddleware:
    """Outermost: gives the request its id (``X-Request-ID`` in and out), puts it on every log line
    written while serving it, and writes one line per request (method, route, status, duration, API
    key prefix); also counts the request for /metrics."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get("X-Request-ID"))
        setattr(request, "request_id", request_id)  # noqa: B010 - HttpRequest declares no such attribute
        started = time.monotonic()
        with log_context(request_id=request_id):
            response = self.get_response(request)
            seconds = time.monotonic() - started
            route = _route(request)
            response["X-Request-ID"] = request_id
            record_request(route=route, method=request.method or "", status=response.status_code, seconds=seconds)
            log_line(
                request_logger,
                logging.INFO,
                "%s %s %s",
                request.method,
                route,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 1),
                    "api_key_prefix": _api_key_prefix(request),
                },
            )
        return response


#: Where the REST API is served. Its clients present API keys (DRF's authentication), never a session;
#: no API view reads ``request.session``, ``request.user`` or Django's messages.
API_PATH_PREFIX = "/api/"


class _BackOfficeOnly:
    """Runs the Django middleware it is mixed into on every path but the REST API's: sessions, the
    logged-in user and the admin's flash messages are the back office's. An API request skips them
    (about 4.5% of an inbound webhook's Python; docs/PERFORMANCE.md, eighth round). Subclasses of
    Django's own classes, so the admin's system checks (admin.E408-E410) still find them."""

    sync_capable = True
    async_capable = False  # the service runs under WSGI; Django adapts if it ever runs under ASGI

    get_response: Any

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PATH_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class BackOfficeSessionMiddleware(_BackOfficeOnly, SessionMiddleware):
    """Django's ``SessionMiddleware``, except on API paths."""


class BackOfficeAuthenticationMiddleware(_BackOfficeOnly, AuthenticationMiddleware):
    """Django's ``AuthenticationMiddleware`` (``request.user``), except on API paths."""


class BackOfficeMessageMiddleware(_BackOfficeOnly, MessageMiddleware):
    """Django's ``MessageMiddleware`` (the admin's flash messages), except on API paths."""


def _is_admin(request: HttpRequest) -> bool:
    return request.path.startswith("/admin")


class RequestSizeLimitMiddleware:
    """Refuses bodies over ``MAX_REQUEST_BODY_BYTES`` with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            return JsonResponse(error_body("bad_request", "Content-Length must be a non-negative integer."), status=400)
        if length > settings.MAX_REQUEST_BODY_BYTES and not _is_admin(request):
            return JsonResponse(
                error_body(
                    "payload_too_large",
                    f"The request body is larger than {settings.MAX_REQUEST_BODY_BYTES} bytes.",
                    {"max_bytes": settings.MAX_REQUEST_BODY_BYTES},
                ),
                status=413,
            )
        return self.get_response(request)


class JsonErrorMiddleware:
    """Turns an unexpected exception into a logged 500 envelope, with DEBUG on or off.

    Django's debug page would otherwise answer API clients with HTML and a stack trace.
    The admin keeps Django's own error pages.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_unavailable(exception):
            return database_unavailable_response(request, exception)
        if _is_admin(request):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return JsonResponse(error_body("internal_error", "An unexpected error occurred."), status=500)


@csrf_exempt
def json_not_found(request: HttpRequest, exception: Exception | None = None, **kwargs) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"No resource at {request.path}."), status=404)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)


def json_forbidden(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("permission_denied", "Forbidden."), status=403)


def json_server_error(request: HttpRequest) -> HttpResponse:
    # Also reached for exceptions raised by middleware (sessions, authentication), which
    # process_exception never sees: the database being down is still a 503, not a 500.
    exception = sys.exc_info()[1]
    if exception is not None and is_database_unavailable(exception):
        return database_unavailable_response(request, exception)
    return JsonResponse(error_body("internal_error", "An unexpected error occurred."), status=500)
