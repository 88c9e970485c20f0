"""What every HTTP adapter shares: one ``httpx.Client`` per provider (with a kept-alive connection per
calling thread), and the classification of
what can go wrong on the wire into ``ProviderError``s (docs/PROVIDERS.md has the fault matrix).

The one question that matters after a failure is whether the provider may have accepted the message:

- it certainly did not (the connection was refused or never established, or the provider answered an
  error it documents as "not accepted"): ``not_accepted=True``; the next provider of the channel may
  be tried at once;
- it may have (a timeout while waiting for the answer, a connection reset mid-answer, an answer that
  cannot be read): ``not_accepted=False``; only a retry with the same idempotency token, to the same
  provider, is safe.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

import httpx
from django.conf import settings

from providers.base import ProviderError, ProviderTimeout

logger = logging.getLogger(__name__)

HTTP = "http"
MOCK = "mock"

_clients: dict[tuple[str, int], httpx.Client] = {}
_clients_lock = threading.Lock()


def http_mode() -> bool:
    """True when sends go to the providers' HTTP APIs (``PROVIDER_MODE=http``), False for the mocks."""
    return bool(settings.PROVIDER_MODE == HTTP)


def client_for(provider: str) -> httpx.Client:
    """This process's client for one provider (created on first use, after any fork): its headers,
    timeouts and auth are shared; its connections are the calling thread's own (``_ThreadTransports``)."""
    key = (provider, os.getpid())
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = httpx.Client(
                    timeout=httpx.Timeout(
                        settings.PROVIDER_TIMEOUT_SECONDS, connect=settings.PROVIDER_CONNECT_TIMEOUT_SECONDS
                    ),
                    transport=_ThreadTransports(calls=settings.PROVIDER_HTTP_MAX_CONNECTIONS),
                    headers={"User-Agent": "messaging-service/1"},
                    follow_redirects=False,
                )
                _clients[key] = client
    return client


def clients_close() -> None:
    """Closes every pooled client (tests change timeouts between cases)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


class _ThreadTransports(httpx.BaseTransport):
    """One provider's connections in one process: each thread that calls it keeps its own keep-alive
    connection (a one-connection pool), and at most ``calls`` requests are in flight at once.

    One pool shared by every thread was what httpx does by default, and httpcore's pool walks all
    its connections and waiting requests, under one lock, when a request starts and when its answer
    is closed: with the outbox's 256 delivery threads that walk took most of a worker's CPU, and the
    worker sent about 100 messages a second at 100-500 ms whatever its concurrency
    (docs/PERFORMANCE.md). A thread's calls are one at a time, so its own connection is always free;
    a call waits up to the pool timeout for one of the ``calls`` slots, and ``httpx.PoolTimeout``
    (nothing sent) when none frees."""

    def __init__(self, *, calls: int) -> None:
        self._slots = threading.BoundedSemaphore(calls)
        self._local = threading.local()
        self._ssl_context = httpx.create_ssl_context()  # loading the CA bundle once, not per thread
        self._open: set[httpx.HTTPTransport] = set()
        self._lock = threading.Lock()

    def _own(self) -> httpx.HTTPTransport:
        owned = getattr(self._local, "owned", None)
        if owned is None:
            transport = httpx.HTTPTransport(
                verify=self._ssl_context, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
            )
            owned = self._local.owned = _Owned(transport)
            with self._lock:
                self._open.add(transport)
            # The thread's locals go when it ends; its connection is closed with them.
            weakref.finalize(owned, self._forget, transport)
        return owned.transport

    def _forget(self, transport: httpx.HTTPTransport) -> None:
        with self._lock:
            self._open.discard(transport)
        transport.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wait = request.extensions.get("timeout", {}).get("pool")
        if not self._slots.acquire(timeout=wait):
            raise httpx.PoolTimeout(f"No free connection within {wait}s.", request=request)
        try:
            response = self._own().handle_request(request)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Releasing(cast(httpx.SyncByteStream, response.stream), self._slots),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            transports, self._open = self._open, set()
        for transport in transports:
            transport.close()


class _Owned:
    """What a thread's locals hold: dropped when the thread ends, which closes its transport."""

    __slots__ = ("__weakref__", "transport")

    def __init__(self, transport: httpx.HTTPTransport) -> None:
        self.transport = transport


class _Releasing(httpx.SyncByteStream):
    """An answer's body; closing it (httpx does once the body is read) frees the call's slot."""

    def __init__(self, stream: httpx.SyncByteStream, slots: threading.BoundedSemaphore) -> None:
        self._stream = stream
        self._slots: threading.BoundedSemaphore | None = slots

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            slots, self._slots = self._slots, None
            if slots is not None:
                slots.release()


@dataclass(frozen=True)
class HttpCall:
    """One provider API request, as the adapter builds it (kept plain so tests can read it)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] | None = None
    json: Any = None
    auth: tuple[str | bytes, str | bytes] | None = None


def http_post(*, provider: str, call: HttpCall) -> httpx.Response:
    """POSTs ``call``; any answer (2xx or not) is returned, transport failures raise ``ProviderError``."""
    try:
        client = client_for(provider)
        if call.auth is None:
            return client.post(call.url, headers=dict(call.headers), data=call.data, json=call.json)
        return client.post(call.url, headers=dict(call.headers), data=call.data, json=call.json, auth=call.auth)
    except httpx.PoolTimeout:
        # Waiting for one of PROVIDER_HTTP_MAX_CONNECTIONS: the request never left this process.
        raise ProviderError(
            provider=provider,
            code="pool_timeout",
            message=(
                f"No free provider connection within {settings.PROVIDER_TIMEOUT_SECONDS:g}s"
                f" (PROVIDER_HTTP_MAX_CONNECTIONS={settings.PROVIDER_HTTP_MAX_CONNECTIONS})."
            ),
            retryable=True,
            not_accepted=True,
            local=True,
        ) from None
    except httpx.ConnectTimeout:
        # No connection, so no request: nothing can have been accepted.
        raise ProviderError(
            provider=provider,
            code="connect_timeout",
            message=f"No connection within {settings.PROVIDER_CONNECT_TIMEOUT_SECONDS:g}s.",
            retryable=True,
            not_accepted=True,
        ) from None
    except httpx.ConnectError as exc:
        raise ProviderError(
            provider=provider,
            code="connection_refused",
            message=f"Could not connect: {exc}",
            retryable=True,
            not_accepted=True,
        ) from None
    except httpx.TimeoutException:
        # The request went out (or may have): the provider may have accepted it.
        raise ProviderTimeout(provider=provider, seconds=settings.PROVIDER_TIMEOUT_SECONDS) from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ProviderError(
            provider=provider,
            code="connection_lost",
            message=f"The connection broke before a full answer ({type(exc).__name__}: {exc}).",
            retryable=True,
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            provider=provider, code="http_error", message=f"{type(exc).__name__}: {exc}", retryable=True
        ) from None


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_or_none(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (an HTML error page from a proxy, a cut body)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def unreadable_answer(*, provider: str, response: httpx.Response, what: str) -> ProviderError:
    """A 2xx whose body cannot be read: the provider accepted something, we cannot say what.
    Transient and never failed over: the retry carries the same idempotency token."""
    return ProviderError(
        provider=provider,
        code="invalid_response",
        message=f"HTTP {response.status_code} without {what}; the send may have been accepted.",
        retryable=True,
    )


def error_from_status(
    *,
    provider: str,
    response: httpx.Response,
    code: int | str,
    message: str,
    not_accepted_statuses: frozenset[int],
    retryable: bool | None = None,
    not_accepted: bool | None = None,
) -> ProviderError:
    """A provider's error answer: 429 and 5xx are transient unless ``retryable`` says otherwise;
    ``not_accepted_statuses`` are the statuses the provider documents as "nothing was accepted"."""
    status = response.status_code
    return ProviderError(
        provider=provider,
        code=code,
        message=message or response.reason_phrase or f"HTTP {status}",
        retryable=(status == 429 or status >= 500) if retryable is None else retryable,
        retry_after=retry_after(response),
        not_accepted=(status in not_accepted_statuses) if not_accepted is None else not_accepted,
    )


def text_snippet(response: httpx.Response, limit: int = 200) -> str:
    return response.content[:limit].decode("utf-8", errors="replace").strip()
