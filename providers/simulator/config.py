"""What the simulator checks and how it behaves. ``Behaviour`` can change at run time (POST /control)."""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

MODES = ("normal", "down", "ratelimit", "timeout", "reset")
"""normal: answer as configured; down: every provider call 503; ratelimit: every call 429 with
Retry-After; timeout: accept, then answer only after ``timeout_seconds``; reset: drop the connection
without an answer (nothing accepted)."""

_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_range_ms(value: str | int | list | tuple) -> tuple[int, int]:
    """``"100-500"``, ``"250"``, ``250`` or ``[100, 500]`` -> (low, high) milliseconds; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a millisecond range: {value!r}")
    if isinstance(value, int):
        low = high = value
    elif isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        low, high = value
    elif isinstance(value, str) and (match := _RANGE.fullmatch(value)):
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
    else:
        raise ValueError(f"not a millisecond range (like 100-500): {value!r}")
    if low < 0 or high < low:
        raise ValueError(f"a millisecond range needs 0 <= low <= high, got {value!r}")
    return low, high


def parse_rate(value: Any) -> float:
    """A probability between 0 and 1; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a rate: {value!r}")
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a rate is between 0 and 1, got {value!r}")
    return rate


@dataclass(frozen=True)
class Credentials:
    """The secrets the simulator checks and signs with; None means "accept any" (or "do not sign")."""

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    sendgrid_api_key: str | None = None
    meta_access_token: str | None = None
    meta_app_secret: str | None = None
    #: HMAC-SHA256 key the service verifies SendGrid webhooks with (SENDGRID_WEBHOOK_VERIFICATION_KEY).
    sendgrid_webhook_key: str | None = None
    #: PEM ECDSA P-256 private key: when set, SendGrid webhooks are signed with ECDSA as SendGrid does.
    sendgrid_webhook_private_key: str | None = None
    whatsapp_phone_number_id: str | None = None
    instagram_account_id: str | None = None


@dataclass(frozen=True)
class Behaviour:
    """Latency, faults and callback behaviour; replaced whole (never mutated) so readers see one version."""

    mode: str = "normal"
    #: Share of provider calls answered 503 (not accepted).
    failure_rate: float = 0.0
    latency_ms: tuple[int, int] = (0, 0)
    #: Retry-After seconds for 429 answers of the ratelimit mode.
    retry_after: int = 1
    #: How long a ``timeout`` fault holds the answer back.
    timeout_seconds: float = 30.0
    callbacks: bool = True
    #: Hold every due callback (and post them when set back to false): lets a test act before they land.
    callbacks_paused: bool = False
    #: When the last status callback of a message is due after acceptance.
    callback_delay_ms: tuple[int, int] = (200, 2000)
    #: Share of status callbacks delivered twice.
    duplicate_rate: float = 0.1
    #: Share of messages whose status callbacks are delivered in reverse order.
    out_of_order_rate: float = 0.1
    #: Share of messages that end undelivered/bounced/failed instead of delivered.
    undelivered_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("failure_rate", "duplicate_rate", "out_of_order_rate", "undelivered_rate"):
            object.__setattr__(self, name, parse_rate(getattr(self, name)))
        for name in ("latency_ms", "callback_delay_ms"):
            object.__setattr__(self, name, parse_range_ms(getattr(self, name)))
        if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int) or self.retry_after < 0:
            raise ValueError(f"retry_after must be a whole number of seconds >= 0, got {self.retry_after!r}")
        if isinstance(self.timeout_seconds, bool) or float(self.timeout_seconds) < 0:
            raise ValueError(f"timeout_seconds must be >= 0, got {self.timeout_seconds!r}")
        object.__setattr__(self, "timeout_seconds", float(self.timeout_seconds))
        for name in ("callbacks", "callbacks_paused"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def updated(self, changes: dict[str, Any]) -> Behaviour:
        """A copy with ``changes`` applied; raises ValueError naming an unknown or bad field."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return replace(self, **changes)
        except TypeError as error:
            raise ValueError(str(error)) from None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = list(self.latency_ms)
        data["callback_delay_ms"] = list(self.callback_delay_ms)
        return data


@dataclass(frozen=True)
class SimulatorConfig:
    #: Where the service's webhooks live, e.g. http://127.0.0.1:8080 (no trailing slash).
    callback_base_url: str = "http://127.0.0.1:8080"
    #: The base URL the service believes it is called at (its PUBLIC_BASE_URL), used in Twilio
    #: signatures; empty: callback_base_url.
    signed_base_url: str = ""
    credentials: Credentials = field(default_factory=Credentials)
    behaviour: Behaviour = field(default_factory=Behaviour)
    callback_attempts: int = 5
    callback_timeout_seconds: float = 10.0
    callback_workers: int = 4
    #: SendGrid refuses a mail/send body over 30 MB with 413.
    max_email_bytes: int = 30 * 1024 * 1024
    #: How many idempotency tokens are remembered (oldest forgotten first).
    max_tokens: int = 200_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "callback_base_url", self.callback_base_url.rstrip("/"))
        signed = (self.signed_base_url or self.callback_base_url).rstrip("/")
        object.__setattr__(self, "signed_base_url", signed)

    @property
    def signed_base(self) -> str:
        """``signed_base_url`` once ``__post_init__`` has filled it in (never None)."""
        return self.signed_base_url or self.callback_base_url


class BehaviourBox:
    """The current Behaviour, swapped atomically; a mode may expire back to normal."""

    def __init__(self, behaviour: Behaviour) -> None:
        self._lock = threading.Lock()
        self._behaviour = behaviour
        self._mode_until: float | None = None

    def get(self, now: float) -> Behaviour:
        with self._lock:
            if self._mode_until is not None and now >= self._mode_until:
                self._behaviour = replace(self._behaviour, mode="normal")
                self._mode_until = None
            return self._behaviour

    def update(self, changes: dict[str, Any], *, now: float, mode_seconds: float | None = None) -> Behaviour:
        with self._lock:
            self._behaviour = self._behaviour.updated(changes)
            if "mode" in changes:
                self._mode_until = now + mode_seconds if mode_seconds is not None else None
            return self._behaviour

    def mode_until(self) -> float | None:
        with self._lock:
            return self._mode_until
