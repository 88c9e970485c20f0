"""Prometheus metrics (prometheus-client). Under gunicorn every process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (bin/start.sh sets and empties it) and ``/metrics`` adds them up; processes
that share the directory (the outbox worker started by ``make run`` or on the same host) are included.
Without the variable (tests, one process) the default in-process registry is used.

``/metrics`` is closed unless allowed: with ``METRICS_TOKEN`` set it wants ``Authorization: Bearer
<token>``; without one it is open in development and answers 404 in production (a separate bind, e.g.
a gunicorn on a private port, can set ``METRICS_PUBLIC=true`` instead).
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import REGISTRY, Collector

from core.errors import error_body

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route (view name), method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request.", ["route", "method"], buckets=_LATENCY_BUCKETS
)
SENDS = Counter(
    "messaging_sends_total",
    "Sends answered by the API, by channel, provider and outcome (sent, pending, failed).",
    ["channel", "provider", "outcome"],
)
ATTEMPTS = Counter(
    "messaging_delivery_attempts_total",
    "Delivery attempts (the inline one of a send and the outbox's), by channel, provider and outcome.",
    ["channel", "provider", "outcome", "source"],
)
ATTEMPT_LATENCY = Histogram(
    "messaging_delivery_attempt_duration_seconds",
    "One delivery attempt: the provider call and recording its outcome.",
    ["channel", "provider"],
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_EVENTS = Counter(
    "webhook_events_total",
    "Provider webhook events stored, by provider, kind and outcome.",
    ["provider", "kind", "outcome"],
)
RATE_LIMIT_REJECTIONS = Counter("rate_limit_rejections_total", "Requests answered 429, by route.", ["route"])


@functools.cache
def _child(metric: MetricWrapperBase, values: tuple[str, ...]) -> Any:  # a Counter or Histogram child
    """``metric.labels(*values)``: the very child prometheus-client keeps for these values, without
    its per-call checks and lock (a few microseconds a request). Label values come from small sets
    (routes, methods, statuses, channels, providers), so this holds what the metric holds anyway."""
    return metric.labels(*values)


#: The methods counted by name; any other (a client may send any token) is counted as ``other``, so a
#: client cannot add label values, and memory, without end.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def record_request(*, route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"
    _child(HTTP_REQUESTS, (route, method, str(status))).inc()
    _child(HTTP_LATENCY, (route, method)).observe(seconds)
    if status == 429:
        _child(RATE_LIMIT_REJECTIONS, (route,)).inc()


def record_send(*, channel: str, provider: str, outcome: str) -> None:
    _child(SENDS, (channel, provider, outcome)).inc()


def record_attempt(*, channel: str, provider: str, outcome: str, source: str, seconds: float) -> None:
    """``source``: ``inline`` (the send request) or ``outbox`` (a worker)."""
    _child(ATTEMPTS, (channel, provider, outcome, source)).inc()
    _child(ATTEMPT_LATENCY, (channel, provider)).observe(seconds)


def webhook_event(*, provider: str, kind: str, outcome: str) -> None:
    """One stored webhook event; for the webhook pipeline to call once per event it stores."""
    _child(WEBHOOK_EVENTS, (provider, kind, outcome)).inc()


class OutboxCollector(Collector):
    """Read from the database at scrape time: how many outbound messages wait, and how late the oldest is."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from messaging.outbox import outbox_stats

        stats = outbox_stats()
        yield GaugeMetricFamily(
            "messaging_outbox_pending", "Outbound messages pending (due or not).", value=stats.pending
        )
        yield GaugeMetricFamily("messaging_outbox_due", "Pending outbound messages due now.", value=stats.due)
        yield GaugeMetricFamily(
            "messaging_outbox_oldest_due_age_seconds",
            "How long the oldest due pending message has been due (0 when none is).",
            value=stats.oldest_due_age_seconds,
        )


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(OutboxCollector())
    return registry


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        presented = request.headers.get("Authorization", "")
        return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())
    return settings.METRICS_PUBLIC


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        # As if it were not there: nothing tells a scanner that a token would open it.
        return JsonResponse(error_body("not_found", f"No resource at {request.path}."), status=404)
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
