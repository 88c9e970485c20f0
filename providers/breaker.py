"""A circuit breaker per provider, shared by every process through the ``provider_breakers`` cache
(Redis when REDIS_URL is set; this process's memory otherwise).

Closed: sends go through, transient failures are counted; PROVIDER_BREAKER_FAILURES of them in a row
open it. Open: for PROVIDER_BREAKER_OPEN_SECONDS no send is made to the provider (the channel's next
provider gets them, or they wait). Half-open: after that, one caller at a time is let through as a
probe; its success closes the breaker, its failure opens it again for another period.

The breaker is advice, never a reason to fail a send: if its cache is unreachable, every provider
counts as closed (logged once a minute).

A process that found a breaker closed with no failure counted takes that answer for
``CLEAN_READ_SECONDS`` without asking the cache again (the outbox asks before every send, up to
thousands of times a second). It forgets it at once when it records a failure of its own; a breaker
another process opens is seen by the next read after that window, or after this process's first
failure, whichever comes first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
_last_warning = float("-inf")


@dataclass(frozen=True)
class Permit:
    """Whether a send may go to the provider now; ``retry_in`` seconds until it may when not."""

    allowed: bool
    state: str
    retry_in: float = 0.0
    #: Closed with no failure counted when asked: a success then has nothing to reset.
    clean: bool = False


def _cache_call(method: str, *args: Any, default: Any = None) -> Any:
    global _last_warning
    try:
        return getattr(caches[settings.PROVIDER_BREAKER_CACHE], method)(*args)
    except Exception as exc:
        if time.monotonic() - _last_warning > 60:
            _last_warning = time.monotonic()
            logger.warning(
                "Circuit breaker store unavailable (%s: %s); breakers count as closed", type(exc).__name__, exc
            )
        return default


def _key(provider: str, what: str) -> str:
    return f"breaker:{provider}:{what}"


#: How long this process trusts a read that found a breaker closed and clean.
CLEAN_READ_SECONDS = 0.5
_CLEAN = Permit(allowed=True, state=CLOSED, clean=True)
_clean_until: dict[str, float] = {}  # provider -> time.monotonic() until which its clean read stands
#: provider -> how many failures this process has recorded: a clean read taken before one of them
#: (another thread's, recorded while the read was in flight) must not be trusted after it.
_failures_seen: dict[str, int] = {}
_clean_lock = threading.Lock()


def breaker_permit(*, provider: str) -> Permit:
    """Asks before a send. In the half-open state only the caller that wins the probe is allowed."""
    if _clean_until.get(provider, 0.0) > time.monotonic():
        return _CLEAN
    generation = _failures_seen.get(provider, 0)
    state = _cache_call("get_many", [_key(provider, "open_until"), _key(provider, "failures")], default={}) or {}
    opened_until = state.get(_key(provider, "open_until"))
    if opened_until is None:
        if state.get(_key(provider, "failures")):
            return Permit(allowed=True, state=CLOSED)
        with _clean_lock:
            if _failures_seen.get(provider, 0) == generation:
                _clean_until[provider] = time.monotonic() + CLEAN_READ_SECONDS
        return _CLEAN
    remaining = float(opened_until) - time.time()
    if remaining > 0:
        return Permit(allowed=False, state=OPEN, retry_in=remaining)
    # Half-open: one probe at a time; its lease outlasts a send so a crashed prober frees it.
    lease = settings.PROVIDER_TIMEOUT_SECONDS * 2 + 1
    if _cache_call("add", _key(provider, "probe"), 1, lease, default=True):
        return Permit(allowed=True, state=HALF_OPEN)
    return Permit(allowed=False, state=HALF_OPEN, retry_in=lease)


def breaker_record_success(*, provider: str, permit: Permit | None = None) -> None:
    """The provider answered (an acceptance, or a refusal of this message alone): close the breaker.
    With the ``permit`` the call was made under: nothing to do (no round trip) if it was clean."""
    if permit is not None and permit.clean:
        return
    _cache_call("delete_many", [_key(provider, "failures"), _key(provider, "open_until"), _key(provider, "probe")])


def breaker_release_probe(*, provider: str, permit: Permit) -> None:
    """A call made under ``permit`` taught nothing about the provider (it never reached it, or its
    failure was one the mock was asked for): if it held the half-open probe, the next caller may
    probe at once rather than after the probe's lease."""
    if permit.allowed and permit.state == HALF_OPEN:
        _cache_call("delete", _key(provider, "probe"))


def breaker_record_failure(*, provider: str) -> str:
    """A transient failure; returns the state after it (OPEN when this failure opened the breaker)."""
    with _clean_lock:
        _failures_seen[provider] = _failures_seen.get(provider, 0) + 1
        _clean_until.pop(provider, None)
    open_seconds = settings.PROVIDER_BREAKER_OPEN_SECONDS
    probing = _cache_call("get", _key(provider, "open_until")) is not None
    failures_key = _key(provider, "failures")
    _cache_call("add", failures_key, 0, max(open_seconds * 10, 600))
    failures = _cache_call("incr", failures_key, default=0) or 0
    if probing or failures >= settings.PROVIDER_BREAKER_FAILURES:
        _cache_call("set", _key(provider, "open_until"), time.time() + open_seconds, None)
        _cache_call("delete", _key(provider, "probe"))
        if not probing:
            logger.warning("Circuit breaker for %s opened after %s failures in a row", provider, failures)
        return OPEN
    return CLOSED


def breaker_state(*, provider: str) -> str:
    """For operators and tests: closed, open or half_open (without taking the probe)."""
    opened_until = _cache_call("get", _key(provider, "open_until"))
    if opened_until is None:
        return CLOSED
    return OPEN if float(opened_until) > time.time() else HALF_OPEN


def breaker_reset(*, provider: str) -> None:
    """Forgets one breaker's state: it is closed again (operators, tests)."""
    _clean_until.pop(provider, None)
    breaker_record_success(provider=provider)
