"""Middleware that keeps every answer of the API in the JSON error envelope."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from core.admission import WAIT_KEY
from core.database import database_unavailable_response, is_database_unavailable
from core.errors import error_body
from core.headers import request_header
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


def _turn_wait(request: HttpRequest) -> dict[str, float]:
    """How long the request waited for its process's turn before Django saw it (core/admission.py),
    when the process runs its requests in turn."""
    waited = request.META.get(WAIT_KEY)
    return {} if waited is None else {"turn_wait_ms": round(waited * 1000, 1)}


class RequestLogMiddleware:
    """Outermost: gives the request its id (``X-Request-ID`` in and out), puts it on every log line
    written while serving it, and writes one line per request (method, route, status, duration, API
    key prefix); also counts the request for /metrics."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request_header(request, "X-Request-ID"))
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
                    **_turn_wait(request),
                },
            )
        return response


#: Where the REST API is served. Its clients present API keys (DRF's authentication), never a session
#: or a CSRF token, and read JSON; no API view reads ``request.session``, ``request.user`` or Django's
#: messages, and no static file is under it.
API_PATH_PREFIX = "/api/"


class ApiLaneMiddleware:
    """Second in ``settings.MIDDLEWARE``, after the request log. A request to the REST API
    (``API_PATH_PREFIX``) goes down a chain of its own: the middleware listed after this one, less
    ``settings.BACK_OFFICE_MIDDLEWARE`` (static files, sessions, CSRF, the logged-in user, the admin's
    flash messages), built as Django builds its own. Every other request goes on down the full chain.
    An API request keeps the rest in the same order (security headers and the HTTPS redirect, the body
    size limit, the JSON error envelope, the host check and Content-Length, X-Frame-Options) and
    answers exactly as it would through the full chain (tests/core/test_api_middleware.py); it skips
    five layers that did nothing for it, about 2% of an inbound message's instructions and 1% of a
    send's (docs/PERFORMANCE.md, eighteenth round)."""

    sync_capable = True
    async_capable = False  # the service runs under WSGI; Django adapts if it ever runs under ASGI

    def __init__(self, get_response):
        self.get_response = get_response
        self._api = _MiddlewareChain(api_middleware())

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PATH_PREFIX):
            return self._api.chain(request)  # type: ignore[return-value]  # synchronous: never an awaitable
        return self.get_response(request)


def api_middleware() -> list[str]:
    """The middleware an API request passes through after ``ApiLaneMiddleware``, in order."""
    lane = f"{ApiLaneMiddleware.__module__}.{ApiLaneMiddleware.__qualname__}"
    following = settings.MIDDLEWARE[settings.MIDDLEWARE.index(lane) + 1 :]
    return [path for path in following if path not in settings.BACK_OFFICE_MIDDLEWARE]


class _MiddlewareChain(BaseHandler):
    """A chain of middleware around the view, built over ``paths`` as ``BaseHandler.load_middleware``
    builds one over ``settings.MIDDLEWARE`` for a synchronous handler: each layer converts exceptions
    to responses, and the view, template-response and exception hooks of these middleware (and only
    these) run around the view in ``BaseHandler._get_response``."""

    def __init__(self, paths: list[str]) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]  # not in the stubs
        for path in reversed(paths):
            middleware = import_string(path)
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if instance is None:
                raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self.chain = handler


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
