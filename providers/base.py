"""The provider interface. Adapters take and return plain dataclasses; no models here."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ForcedError:
    """Mock-only: fail the first ``times`` attempts (all of them when ``times`` is None)."""

    code: int
    message: str | None = None
    times: int | None = None
    #: Seconds the provider asks us to wait (its Retry-After header), for 429 and 503.
    retry_after: int | None = None

    def applies_to(self, attempt: int) -> bool:
        return self.times is None or attempt <= self.times


@dataclass(frozen=True)
class OutboundMessage:
    channel: str
    type: str
    from_address: str
    to_address: str
    body: str
    attachments: list[str]
    # Stable per message; a provider that honours it never sends one message twice.
    idempotency_token: str
    attempt: int = 1
    forced_error: ForcedError | None = None


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str
    status: str
    response: dict[str, Any] = field(default_factory=dict)
    #: The provider recognised the idempotency token and answered with the original send; nothing new left.
    replayed: bool = False


class ProviderError(Exception):
    """A provider refused or failed a call. ``retryable`` says whether trying again may work."""

    def __init__(
        self,
        *,
        provider: str,
        code: int | str,
        message: str,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {code} {message}")
        self.provider = provider
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    @classmethod
    def from_http_status(
        cls, *, provider: str, status: int, message: str, retry_after: float | None = None
    ) -> ProviderError:
        """429 and 5xx are transient; any other 4xx is permanent."""
        retryable = status == 429 or status >= 500
        return cls(
            provider=provider,
            code=status,
            message=message,
            retryable=retryable,
            retry_after=retry_after,
        )


class ProviderTimeout(ProviderError):
    def __init__(self, *, provider: str, seconds: float) -> None:
        super().__init__(provider=provider, code="timeout", message=f"No answer within {seconds:g}s.", retryable=True)


class MessageProvider(abc.ABC):
    """One provider of one channel. ``send`` returns a result or raises ``ProviderError``."""

    name: str
    #: Whether the adapter honours ``OutboundMessage.forced_error`` (the mocks). A real provider never
    #: does, and the API refuses ``_forceError`` for it rather than silently sending for real.
    simulates_failures: bool = False

    @abc.abstractmethod
    def send(self, message: OutboundMessage) -> SendResult: ...
