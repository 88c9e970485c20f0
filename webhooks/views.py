"""Webhook intake: one view for every provider endpoint, one pipeline.

keep raw -> verify (the provider's signature) -> parse (the provider's endpoint) -> dedupe -> apply
(webhooks/services.py). ``webhook_urls()`` makes one route per endpoint every registered provider
declares, so a new provider's webhooks need no code here.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path
from django.utils.http import parse_header_parameters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError, error_body
from core.headers import wsgi_name
from core.metrics import webhook_event
from core.openapi import WRITE_ERROR_RESPONSES, ErrorEnvelope
from providers.base import Provider, RawWebhook, SignatureInvalid, WebhookEndpoint
from providers.registry import providers_all
from webhooks.openapi import EventBatchAck, WebhookAck
from webhooks.services import ItemResult, webhook_ingest, webhook_record_unverified
from webhooks.signatures import signatures_required, signed_request_from_django

#: Request headers worth keeping with any event (the provider's own are added); never credentials.
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Request-Id")

#: Every webhook: a signature that is missing, wrong or stale (when signatures apply) is a 403.
WEBHOOK_ERROR_RESPONSES = {
    **WRITE_ERROR_RESPONSES,
    403: OpenApiResponse(ErrorEnvelope, "Signature missing, wrong or stale; the request is kept as rejected."),
}


class _RawBodyParser(BaseParser):
    """Leaves the body alone: the provider reads it from the stored bytes. Declared per endpoint so
    DRF answers 415 for a media type the endpoint does not take."""

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class WebhookView(APIView):
    """One provider endpoint. Each request is stored raw with its outcome."""

    authentication_classes: list = []  # providers prove themselves by signature, not by API key
    permission_classes = [AllowAny]
    provider: Provider
    endpoint: WebhookEndpoint

    def post(self, request: Request) -> Response:
        raw = _raw_webhook(request, provider=self.provider, kind=self.endpoint.kind)
        if signatures_required(self.provider):
            try:
                self.provider.verify(signed_request_from_django(request))
            except SignatureInvalid as invalid:
                webhook_record_unverified(raw=raw, invalid=invalid)
                webhook_event(provider=raw.provider, kind=raw.kind, outcome="rejected")
                return Response(error_body(invalid.code, invalid.message), status=invalid.status_code)
        try:
            results = webhook_ingest(endpoint=self.endpoint, raw=raw)
        except ApplicationError as rejection:
            webhook_event(provider=raw.provider, kind=raw.kind, outcome="rejected")
            return _error(rejection)
        for result in results:
            webhook_event(provider=raw.provider, kind=result.kind, outcome=result.outcome)
        if self.endpoint.batch:
            return Response(_batch_ack(results))
        result = results[0]
        if result.rejection is not None:
            return _error(result.rejection)
        return Response({"status": result.outcome, "event_id": result.event_id, "message_id": result.message_id})

    def get(self, request: Request) -> HttpResponse:
        if self.endpoint.handshake is None:
            return Response(error_body("method_not_allowed", 'Method "GET" not allowed.'), status=405)
        try:
            challenge = self.endpoint.handshake(request.query_params)
        except ApplicationError as refused:
            return _error(refused)
        return HttpResponse(challenge, content_type="text/plain; charset=utf-8")


def _error(error: ApplicationError) -> Response:
    return Response(error_body(error.code, error.message, error.details), status=error.status_code)


def _batch_ack(results: list[ItemResult]) -> dict[str, Any]:
    counts = dict.fromkeys(("processed", "duplicate", "orphan", "rejected", "error"), 0)
    events = []
    for result in results:
        counts[result.outcome] += 1
        entry: dict[str, Any] = {
            "index": result.index,
            "event_id": result.event_id or None,
            "status": result.outcome,
            "message_id": result.message_id,
        }
        if result.error:
            entry["error"] = result.error
        events.append(entry)
    return {"received": len(results), **counts, "events": events}


def _raw_webhook(request: HttpRequest, *, provider: Provider, kind: str) -> RawWebhook:
    raw = request.body
    # Text columns cannot hold NUL; anything undecodable is kept visibly replaced.
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    kept = (*KEPT_HEADERS, *provider.kept_headers)
    meta = request.META
    headers = {name: meta[key] for name in kept if (key := wsgi_name(name)) in meta}
    media_type, _ = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    return RawWebhook(
        provider=provider.name,
        kind=kind,
        headers=headers,
        content_type=media_type.lower(),
        body=text,
        raw_bytes=raw,
        body_exact=text.encode("utf-8") == raw,
    )


def _view_for(provider: Provider, endpoint: WebhookEndpoint):
    """A WebhookView subclass for one endpoint, documented from the provider's OpenAPI details."""
    parsers = [type(f"{media}Parser", (_RawBodyParser,), {"media_type": media}) for media in endpoint.media_types]
    responses = {
        200: OpenApiResponse(
            EventBatchAck if endpoint.batch else WebhookAck,
            "What became of each event." if endpoint.batch else "Stored (first delivery), a duplicate or an orphan.",
        ),
        **WEBHOOK_ERROR_RESPONSES,
    }
    docs = {"tags": ["webhooks"], "responses": responses, **endpoint.openapi}
    operation_id = "webhook_" + endpoint.path.replace("/", "_").replace("-", "_")
    namespace: dict[str, Any] = {
        "provider": provider,
        "endpoint": endpoint,
        "parser_classes": parsers,
        "post": extend_schema(operation_id=operation_id, **docs)(_copy(WebhookView.post)),
    }
    if endpoint.handshake is not None:
        handshake_docs = {
            "tags": ["webhooks"],
            "summary": "Webhook verification handshake",
            "responses": {200: OpenApiResponse(str, "The challenge, as text/plain."), 403: ErrorEnvelope},
            **endpoint.handshake_openapi,
        }
        namespace["get"] = extend_schema(**handshake_docs)(_copy(WebhookView.get))
    else:
        namespace["http_method_names"] = ["post", "options"]
    name = "".join(part.capitalize() for part in endpoint.path.replace("/", "-").split("-")) + "WebhookView"
    view_class: type[WebhookView] = type(name, (WebhookView,), namespace)
    return view_class.as_view()


def _copy(function):
    def method(self, request):
        return function(self, request)

    method.__name__ = function.__name__
    return method


def webhook_urls() -> list[URLPattern]:
    """``/api/webhooks/<path>`` for every endpoint of every registered provider (trailing slash optional)."""
    return [
        re_path(rf"^api/webhooks/{endpoint.path}/?$", _view_for(provider, endpoint), name=f"webhook-{endpoint.path}")
        for provider in providers_all()
        for endpoint in provider.webhook_endpoints()
    ]
