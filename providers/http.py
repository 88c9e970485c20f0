"""What every HTTP adapter shares: one pooled ``httpx.Client`` per provider, and the classification of
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

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
    """This process's pooled client for one provider (created on first use, after any fork)."""
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
                    limits=httpx.Limits(
                        max_connections=settings.PROVIDER_HTTP_MAX_CONNECTIONS,
                        max_keepalive_connections=settings.PROVIDER_HTTP_MAX_CONNECTIONS,
                    ),
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
