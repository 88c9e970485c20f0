"""The in-process simulation every provider's mock mode shares, and the switch to HTTP.

``MockProvider`` owns the pipeline (latency, timeout, forced and random failures, idempotency tokens,
acceptance); each provider module only shapes its request, its identifiers and its response fields.
With ``PROVIDER_MODE=http`` the same provider sends through its ``send_http`` instead (its real API
over ``providers.http``), and ``_forceError`` is refused as for any real provider.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import random
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from core.admission import waiting_outside
from core.redis_cache import LuaScript
from providers.base import OutboundMessage, Provider, ProviderError, ProviderTimeout, SendResult
from providers.http import http_mode

logger = logging.getLogger(__name__)

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _ledger_call(method: str, *args: Any) -> Any:
    """The mock's memory is best effort: if its cache is down, the mock still answers (ids are derived
    from the token, so a repeat still gets the same id; only the replay bookkeeping is lost)."""
    try:
        return getattr(caches[settings.MOCK_PROVIDER_CACHE], method)(*args)
    except Exception as exc:
        _ledger_unavailable(exc)
        return None


def _ledger_unavailable(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > 60:  # once a minute, not once a send
        _last_warning = time.monotonic()
        logger.warning(
            "Mock provider memory unavailable (%s: %s); idempotency tokens not remembered", type(exc).__name__, exc
        )


_last_warning = float("-inf")


#: The token stored (SET NX) and the send counted (INCR, EXPIRE), together or not at all.
_REMEMBER_AND_COUNT = LuaScript(
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    redis.call('INCR', KEYS[2])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    return 1
end
return 0
"""
)


def digest(token: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()


#: How long a mock remembers an idempotency token, as Twilio does.
TOKEN_TTL_SECONDS = 24 * 60 * 60


class MockProvider(Provider):
    """Honours idempotency tokens like the real providers: a token already accepted gets the original
    answer back and nothing is sent again. The mock's memory is the ``mock_providers`` cache: shared by
    every process when REDIS_URL is set, per process otherwise."""

    @property
    def simulates_failures(self) -> bool:
        return not http_mode()

    #: Settings this provider's HTTP mode cannot work without (checked at start-up in HTTP mode).
    http_required_settings: tuple[str, ...] = ()

    @property
    def replays_by_token(self) -> bool:
        # The mock remembers every token it accepted (in Redis, or in files without it). No real API
        # is counted on: SendGrid and Meta have no idempotency of their own, and Twilio's replay by
        # its I-Twilio-Idempotency-Token header is not relied on.
        return not http_mode()

    def send(self, message: OutboundMessage) -> SendResult:
        if http_mode():
            return self.send_http(message)
        return self._send_mock(message)

    @abc.abstractmethod
    def send_http(self, message: OutboundMessage) -> SendResult:
        """Sends through the provider's real API (``PROVIDER_MODE=http``)."""

    def http_settings_problems(self) -> list[str]:
        """Missing settings HTTP mode needs, for the start-up check."""
        return [
            f"{self.name}: {name} is required with PROVIDER_MODE=http."
            for name in self.http_required_settings
            if not getattr(settings, name, None)
        ]

    def _send_mock(self, message: OutboundMessage) -> SendResult:
        self._simulate_latency()
        # The token travels the way the real API carries it, and is read back from there.
        token = self.idempotency_token(self.request_for(message))
        forced = message.forced_error
        if forced is None and not settings.MOCK_PROVIDER_FAILURE_RATE:
            # Nothing can fail this send: remembering the token first, with the send counted in the
            # same round trip, also tells whether it was seen before.
            result = self.accept(message)
            if not self._remember_send(token, result):
                return self._earlier_send(token) or result
            return result
        earlier = self._earlier_send(token)
        if earlier is not None:
            return earlier
        if forced is not None and forced.applies_to(message.attempt):
            raise ProviderError.from_http_status(
                provider=self.name,
                status=forced.code,
                message=forced.message or _REASONS.get(forced.code, "Error"),
                retry_after=forced.retry_after,
            )
        if settings.MOCK_PROVIDER_FAILURE_RATE and random.random() < settings.MOCK_PROVIDER_FAILURE_RATE:
            raise ProviderError.from_http_status(provider=self.name, status=503, message="Service Unavailable")
        result = self.accept(message)
        if not self._remember_send(token, result):
            # A concurrent call with the same token got there first: answer as it did.
            return self._earlier_send(token) or result
        return result

    def _key(self, *parts: str) -> str:
        return ":".join(("mock-provider", self.key, *parts))

    def _earlier_send(self, token: str) -> SendResult | None:
        stored = _ledger_call("get", self._key("token", token))
        if stored is None:
            return None
        self._count("replays")
        logger.info("%s mock: idempotency token %s seen before; answering with the original send", self.name, token)
        return SendResult(**stored, replayed=True)

    def _remember_send(self, token: str, result: SendResult) -> bool:
        """Remembers the token's answer unless the token was seen before, and counts the send if it was
        not; False when the token was already remembered (nothing sent, nothing counted)."""
        stored = {
            "provider": result.provider,
            "provider_message_id": result.provider_message_id,
            "status": result.status,
            "response": result.response,
        }
        ledger = caches[settings.MOCK_PROVIDER_CACHE]
        if not isinstance(ledger, RedisCache):
            added = _ledger_call("add", self._key("token", token), stored, TOKEN_TTL_SECONDS)
            if added is False:
                return False
            self._count("sends")
            return True
        # One round trip, and atomic: the token stored (SET NX) and the send counted (INCR, EXPIRE)
        # together or not at all, so the count stays exact even when a timeout hides whether Redis
        # applied it (a lost answer is never retried). Unreachable: the send goes ahead uncounted.
        try:
            token_key = ledger.make_and_validate_key(self._key("token", token))
            count_key = ledger.make_and_validate_key(self._key("sends"))
            backend: Any = ledger._cache  # its serializer stores values as Django's ``add`` would
            client = backend.get_client(token_key, write=True)
            added = _REMEMBER_AND_COUNT(
                client,
                keys=[token_key, count_key],
                args=[backend._serializer.dumps(stored), TOKEN_TTL_SECONDS],
            )
        except Exception as exc:
            _ledger_unavailable(exc)
            return True
        return bool(added)

    def _count(self, what: str) -> None:
        key = self._key(what)
        ledger = caches[settings.MOCK_PROVIDER_CACHE]
        if not isinstance(ledger, RedisCache):
            _ledger_call("add", key, 0, TOKEN_TTL_SECONDS)
            _ledger_call("incr", key)
            return
        # One round trip: INCR creates the counter (Django's cache stores integers as Redis integers,
        # so ``get`` reads it back) and EXPIRE keeps it a day from the last count. Never retried: a
        # timeout may come after Redis applied it, and a retry would count the send twice.
        try:
            redis_key = ledger.make_and_validate_key(key)
            pipeline = ledger._cache.get_client(redis_key, write=True).pipeline(transaction=False)
            pipeline.incr(redis_key)
            pipeline.expire(redis_key, TOKEN_TTL_SECONDS)
            pipeline.execute()
        except Exception as exc:
            _ledger_unavailable(exc)

    def counts(self) -> dict[str, int]:
        """Sends and idempotent replays this mock has seen (for tests and simulate_provider)."""
        return {what: _ledger_call("get", self._key(what)) or 0 for what in ("sends", "replays")}

    def _simulate_latency(self) -> None:
        low, high = settings.MOCK_PROVIDER_LATENCY_MS
        seconds = random.uniform(low, high) / 1000 if high else 0.0
        timeout = settings.PROVIDER_TIMEOUT_SECONDS
        if seconds:
            with waiting_outside():  # as a real provider's answer: the process's next request runs meanwhile
                time.sleep(min(seconds, timeout))
        if seconds > timeout:
            raise ProviderTimeout(provider=self.name, seconds=timeout)

    @abc.abstractmethod
    def request_for(self, message: OutboundMessage) -> dict[str, Any]:
        """The HTTP request the real provider's API would get for this message."""

    @abc.abstractmethod
    def idempotency_token(self, request: dict[str, Any]) -> str:
        """The idempotency token, read back from where ``request_for`` put it."""

    @abc.abstractmethod
    def accept(self, message: OutboundMessage) -> SendResult:
        """The provider's answer to a first send: its id and response fields."""
