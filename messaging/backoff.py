"""When to try a transiently failed send again: exponential backoff with jitter."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

#: The longest Retry-After honoured; a provider asking for more is retried after a day.
MAX_RETRY_AFTER_SECONDS = 24 * 60 * 60


def attempts_used_up(*, attempts: int, attempt_base: int) -> bool:
    """Whether a message has had every attempt it gets: ``MAX_ATTEMPTS`` since an operator last
    re-queued it (``attempt_base``). The outbox claim's SQL says the same (``messaging.outbox``)."""
    return attempts - attempt_base >= settings.MAX_ATTEMPTS


def retry_delay_seconds(*, attempts: int, retry_after: float | None = None) -> float:
    """Delay before the next attempt after ``attempts`` failed ones.

    ``base * 2**(attempts-1)`` capped at the maximum, with "equal jitter" (half fixed, half random)
    so that a burst of failures does not retry in lockstep. A provider's Retry-After is a floor.
    """
    ceiling = min(settings.RETRY_MAX_DELAY_SECONDS, settings.RETRY_BASE_DELAY_SECONDS * 2 ** max(attempts - 1, 0))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        # A floor, but a sane one: an absurd Retry-After must not park the message for years.
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def next_attempt_at(*, attempts: int, retry_after: float | None = None, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=retry_delay_seconds(attempts=attempts, retry_after=retry_after))
