"""Rate limits on the send endpoints, counted by django-ratelimit in the "ratelimit" cache.

The cache is Redis when ``REDIS_URL`` is set, so every process shares one count per key; otherwise it
is this process's memory. Each channel has its own limit (the channel registry names its setting: ``SMS_RATE_LIMIT``,
``EMAIL_RATE_LIMIT``, ``WHATSAPP_RATE_LIMIT``, ``INSTAGRAM_RATE_LIMIT``)
per key (``RATE_LIMIT_KEY``: the sender address, the authenticated API key, or the client IP), counted in
django-ratelimit's fixed windows.

The view counts a send once the request is fully validated (so invalid requests cost nothing and the
sender address is normalised) and before ``message_send`` (so a 429 stores and sends nothing, and an
idempotent replay counts like any other request). See docs/RATE_LIMITING.md.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from django_ratelimit import core as ratelimit_core
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from conversations.channels import CHANNELS
from core.errors import RateLimited, RateLimitUnavailable
from core.headers import request_header
from core.redis_cache import LuaScript

logger = logging.getLogger(__name__)

_KEY_LABELS = {"sender": "sender", "api_key": "API key", "ip": "client IP"}
#: The attribute of the request that keeps its quota until the answer's headers are written.
_QUOTA_ATTRIBUTE = "send_rate_limit_quota"
#: Retry-After of the 503 answered when the counters are unreachable and the limiter fails closed.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
#: At most one "counters unreachable" warning per process in this many seconds.
_WARNING_INTERVAL_SECONDS = 60.0
_last_unavailable_warning: float | None = None


@dataclass(frozen=True)
class Quota:
    """Where one key stands in its current window, this request included."""

    limit: int
    window_seconds: int
    remaining: int
    #: Unix time (seconds) at which the next window starts and the count begins again.
    reset: int
    #: Whole seconds until ``reset``; at least 1.
    retry_after: int
    exceeded: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def rate_limit_consume(*, request: HttpRequest, channel: str, sender: str) -> Quota | None:
    """Counts one send of ``channel`` against this request's key and raises ``RateLimited`` past the limit.

    Returns None when nothing was counted: limits switched off, or the counters unreachable while
    failing open. The quota is kept on the request for ``rate_limit_headers``.
    """
    key = rate_limit_key(request=request, sender=sender)
    quota = _count(request=request, channel=channel, key=key)
    setattr(request, _QUOTA_ATTRIBUTE, quota)
    if quota is not None and quota.exceeded:
        who = _KEY_LABELS[key.partition(":")[0]]
        raise RateLimited(
            f"Too many {CHANNELS[channel].label} messages for this {who}: at most {quota.limit} every "
            f"{quota.window_seconds} seconds. Retry in {quota.retry_after} seconds.",
            details={"limit": quota.limit, "window_seconds": quota.window_seconds, "retry_after": quota.retry_after},
            headers={**quota.headers(), "Retry-After": str(quota.retry_after)},
        )
    return quota


def rate_limit_peek(*, request: HttpRequest, channel: str, sender: str | None) -> None:
    """For a send refused before it is counted (a validation error): where its key stands, without
    counting it, so that answer carries the X-RateLimit-* headers too. Nothing when the key cannot be
    told (per-sender limits and no valid sender) or the counters are unreachable."""
    if settings.RATE_LIMIT_KEY == "sender" and sender is None:
        return
    try:
        quota = _count(
            request=request, channel=channel, key=rate_limit_key(request=request, sender=sender or ""), increment=False
        )
    except RateLimitUnavailable:
        return  # the request is refused for its own reasons; the limiter's state is not its answer
    setattr(request, _QUOTA_ATTRIBUTE, quota)


def rate_limit_headers(*, request: HttpRequest) -> dict[str, str]:
    """The X-RateLimit-* headers for any answer to a counted request; empty when it was not counted."""
    quota = getattr(request, _QUOTA_ATTRIBUTE, None)
    return quota.headers() if quota is not None else {}


def rate_limit_key(*, request: HttpRequest, sender: str) -> str:
    """What the limit counts per, as ``RATE_LIMIT_KEY`` says."""
    if settings.RATE_LIMIT_KEY == "sender":
        # Already normalised (E.164, e-mail domain lower-cased); mailboxes ignore case in practice.
        return "sender:" + sender.casefold()
    if settings.RATE_LIMIT_KEY == "api_key":
        # The authenticated key (apikeys), by id: never the secret. Without one, the client's address.
        api_key = getattr(request, "auth", None)
        if api_key is not None:
            return f"api_key:{api_key.pk}"
    return "ip:" + client_ip(request)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the right-most entry of ``RATE_LIMIT_IP_HEADER`` when that is configured
    and holds an IP address, else ``REMOTE_ADDR``. IPv6 clients count per /64, the block one client holds."""
    candidates = [request.META.get("REMOTE_ADDR") or ""]
    if settings.RATE_LIMIT_IP_HEADER:
        candidates.insert(0, (request_header(request, settings.RATE_LIMIT_IP_HEADER) or "").split(",")[-1])
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate.strip())
        except ValueError:
            continue
        if address.version == 6:
            return str(ipaddress.IPv6Network((int(address), 64), strict=False).network_address)
        return str(address)
    return "unknown"


def _count(*, request: HttpRequest, channel: str, key: str, increment: bool = True) -> Quota | None:
    if not settings.RATELIMIT_ENABLE:
        return None
    _warn_once_if_counted_per_process()
    limit, window_seconds = CHANNELS[channel].rate_limit
    try:
        counter = caches[settings.RATELIMIT_USE_CACHE]
        if increment and isinstance(counter, RedisCache):
            usage = _count_in_redis(counter, channel=channel, key=key, rate=(limit, window_seconds))
        else:
            usage = get_usage(
                request,
                # One django-ratelimit group per channel: each channel is counted separately.
                group=_group(channel),
                key=lambda _group, _request: key,
                rate=(limit, window_seconds),
                increment=increment,
            )
    except (RedisError, OSError) as exc:
        return _counters_unavailable(reason=f"{type(exc).__name__}: {exc}")
    # django-ratelimit reports a cache that gave no count as limit 0 (as None with its own fail-open on).
    if usage is None or usage["limit"] == 0:
        return _counters_unavailable(reason="the cache returned no count")
    # The window counts up to and including second ``now + time_left``; the next one starts a second later.
    retry_after = max(usage["time_left"], 0) + 1
    return Quota(
        limit=limit,
        window_seconds=window_seconds,
        remaining=max(limit - usage["count"], 0),
        reset=int(time.time()) + retry_after,
        retry_after=retry_after,
        exceeded=usage["should_limit"],
    )


def _group(channel: str) -> str:
    return f"messaging.send.{channel}"


#: django-ratelimit's counter as one atomic command: a new counter gets its expiry in the same step,
#: so a counter can never be left without one.
_INCREMENT = LuaScript(
    """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
)


def _count_in_redis(counter: RedisCache, *, channel: str, key: str, rate: tuple[int, int]) -> dict:
    """django-ratelimit's ``get_usage(increment=True)`` (the same counter key, window and answer) in
    one round trip instead of up to three (SET NX, EXISTS, INCRBY): a Lua script that increments the
    counter and, when that created it, sets its expiry. Sent by its SHA1 (``core.redis_cache.LuaScript``
    sends its source when Redis does not know it); cheaper for the client than a MULTI/EXEC of the same
    two commands."""
    limit, period = rate
    window = ratelimit_core._get_window(key, period)
    cache_key = counter.make_and_validate_key(
        ratelimit_core._make_cache_key(_group(channel), window, rate, key, ratelimit_core.ALL)
    )
    client = counter._cache.get_client(cache_key, write=True)
    count = _INCREMENT(client, keys=[cache_key], args=[period + ratelimit_core.EXPIRATION_FUDGE])
    return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": window - int(time.time())}


def _counters_unavailable(*, reason: str) -> Quota | None:
    """Fail open (count nothing, answer without X-RateLimit-* headers) or closed (503), and say so."""
    fail_open = settings.RATE_LIMIT_FAIL_OPEN
    _warn_unavailable(
        "Rate-limit counters unreachable (%s); %s (RATE_LIMIT_FAIL_OPEN=%s).",
        reason,
        "sending without limits" if fail_open else "refusing sends with 503",
        str(fail_open).lower(),
    )
    if fail_open:
        return None
    raise RateLimitUnavailable(
        "Sending is paused because the rate limiter is unavailable. Retry shortly.",
        details={"retry_after": UNAVAILABLE_RETRY_AFTER_SECONDS},
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


def _warn_unavailable(message: str, *args: object) -> None:
    global _last_unavailable_warning  # one throttle per process
    now = time.monotonic()
    if _last_unavailable_warning is not None and now - _last_unavailable_warning < _WARNING_INTERVAL_SECONDS:
        return
    _last_unavailable_warning = now
    logger.warning(message, *args)


@functools.cache
def _warn_once_if_counted_per_process() -> None:
    backend = settings.CACHES[settings.RATELIMIT_USE_CACHE]["BACKEND"]
    if backend.endswith(".LocMemCache") and not settings.DEBUG:
        logger.warning(
            "REDIS_URL is not set: rate limits are counted in each process's memory, so every server "
            "process allows the full limit. Set REDIS_URL when running more than one process."
        )
