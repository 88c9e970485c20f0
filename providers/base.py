"""The provider interface and the plain dataclasses that cross it. No models here.

One ``Provider`` subclass per provider module owns everything about that provider: how it sends, the
webhook endpoints it calls, how it signs them, how its payloads read and what its statuses mean.
The service's generic code (the send pipeline in ``messaging``, the webhook pipeline in ``webhooks``)
only ever asks a provider; it never compares a provider's name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from django.utils.datastructures import CaseInsensitiveMapping
from django.utils.http import parse_header_parameters

from core.errors import ApplicationError

# Sending --------------------------------------------------------------------------------------------


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
    """A provider refused or failed a call. ``retryable`` says whether trying again may work.

    ``not_accepted`` is True only when the failure proves the provider did not take the message (the
    connection was refused, or it answered an error it documents as "nothing accepted", like 429 or
    503): then another provider may send it without risk of a double send. Anything that leaves the
    outcome unknown (a timeout, a connection lost mid-answer, an unreadable answer) stays False.

    ``local`` is True when the call stopped in this process for a reason of its own, before reaching
    the provider (no free slot under PROVIDER_HTTP_MAX_CONNECTIONS): it says nothing about the
    provider's health, so the provider's circuit breaker does not count it.
    """

    def __init__(
        self,
        *,
        provider: str,
        code: int | str,
        message: str,
        retryable: bool,
        retry_after: float | None = None,
        not_accepted: bool = False,
        local: bool = False,
    ) -> None:
        super().__init__(f"{provider}: {code} {message}")
        self.provider = provider
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.not_accepted = not_accepted
        self.local = local

    @classmethod
    def from_http_status(
        cls, *, provider: str, status: int, message: str, retry_after: float | None = None
    ) -> ProviderError:
        """429 and 5xx are transient; any other 4xx is permanent. 429 and 503 say nothing was accepted."""
        retryable = status == 429 or status >= 500
        return cls(
            provider=provider,
            code=status,
            message=message,
            retryable=retryable,
            retry_after=retry_after,
            not_accepted=status in (429, 503),
        )


class ProviderTimeout(ProviderError):
    def __init__(self, *, provider: str, seconds: float) -> None:
        super().__init__(provider=provider, code="timeout", message=f"No answer within {seconds:g}s.", retryable=True)


# Webhooks -------------------------------------------------------------------------------------------

#: What a status event means for our outbound message (each provider maps its own names to these).
SENT = "sent"
DELIVERED = "delivered"
READ = "read"
FAILED = "failed"
#: Kept with the message, no status change (opens, clicks, deferrals).
RECORD_ONLY = "record_only"
#: A status we have never heard of: kept raw, no status change, logged.
UNKNOWN = "unknown"
STATUS_CHANGES = (SENT, DELIVERED, READ, FAILED)

INBOUND = "inbound"
STATUS = "status"
#: A whole request whose items may be of either kind (stored so only when it is refused as a whole).
DELIVERY = "delivery"


@dataclass(frozen=True)
class RawWebhook:
    """A provider's request (or one item of a batch) as received: what is stored and replayed."""

    provider: str
    #: INBOUND or STATUS; DELIVERY for a whole request whose items may be of either kind.
    kind: str
    headers: Mapping[str, str]
    content_type: str
    body: str
    raw_bytes: bytes
    #: ``body`` holds exactly what was received (no undecodable byte or NUL had to be replaced).
    body_exact: bool = True


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers, independent of Django so tests and tools can build one directly.

    ``url`` is the full public URL as the provider called it (scheme://host[:port]/path?query);
    ``headers`` are looked up case-insensitively; ``content_type`` keeps only the media type, lowercased.
    """

    method: str
    url: str
    # Kept out of repr: headers can hold credentials and the body personal data, and reprs get logged.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    content_type: str = ""

    def __post_init__(self) -> None:
        media_type, _ = parse_header_parameters(self.content_type)
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "headers", CaseInsensitiveMapping(self.headers))
        object.__setattr__(self, "content_type", media_type.strip().lower())


class SignatureInvalid(ApplicationError):
    """The request cannot be proven to come from the provider (403).

    The message says what is wrong with the request and is safe to show the caller: it never holds a
    secret or the signature we expected.
    """

    status_code = 403
    code = "invalid_signature"


@dataclass(frozen=True)
class InboundMessage:
    """A message a provider delivered, as its payload says it. ``type`` is what the payload asked for
    (None: infer it); the addresses are raw until the channel's rules have normalised them."""

    channel: str
    type: str | None
    provider: str
    provider_message_id: str
    from_address: str
    to_address: str
    body: str
    timestamp: datetime | None
    attachments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StatusEvent:
    """One provider event about an outbound message, mapped to what it means for us."""

    provider: str
    event_id: str
    provider_message_id: str
    #: The provider's own status or event name, lower-cased.
    event_type: str
    #: SENT, DELIVERED, READ, FAILED, RECORD_ONLY or UNKNOWN.
    meaning: str
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class WebhookItem:
    """One event of a provider's request: stored, deduplicated and applied on its own.

    ``raw`` is what is stored for it (for a batch, the item alone, in a shape ``parse_stored`` reads
    back). ``parsed`` is the event, or ``rejection`` says why this item cannot be processed.
    """

    raw: RawWebhook
    kind: str
    parsed: InboundMessage | StatusEvent | None = None
    rejection: ApplicationError | None = None
    #: The item's event id as far as it could be read, for the record of a rejected item.
    event_id: str = ""


@dataclass(frozen=True)
class WebhookEndpoint:
    """One URL a provider calls: ``/api/webhooks/<path>``.

    ``batch``: the request carries several events, each answered in the batch acknowledgement;
    otherwise it carries one, answered with that event's outcome. ``openapi``: keyword arguments for
    drf-spectacular's ``extend_schema`` (summary, request, examples ...), so the provider documents it.
    """

    path: str
    #: INBOUND, STATUS, or DELIVERY when one request may carry both.
    kind: str
    parse: Callable[[RawWebhook], list[WebhookItem]]
    batch: bool = False
    #: Media types the endpoint takes; anything else is a 415.
    media_types: tuple[str, ...] = ("application/json",)
    #: GET handshake (e.g. Meta's hub.challenge): query parameters -> the text to answer.
    handshake: Callable[[Mapping[str, str]], str] | None = None
    openapi: Mapping[str, Any] = field(default_factory=dict)
    handshake_openapi: Mapping[str, Any] = field(default_factory=dict)


class Provider(abc.ABC):
    """One provider: sending, its webhooks, its signatures, its payloads and its status tables."""

    #: The provider's name as stored on messages and webhook events.
    name: ClassVar[str]

    @property
    def simulates_failures(self) -> bool:
        """Whether ``send`` honours ``OutboundMessage.forced_error`` (the mocks). A real provider never
        does, and the API refuses ``_forceError`` for it rather than silently sending for real."""
        return False

    @property
    def replays_by_token(self) -> bool:
        """Whether a send repeated with the same idempotency token is answered with the original send
        instead of being sent again. Only then may an accepted send's recorded outcome be lost
        without a second send (messaging.services, ``_outcome_commits_asynchronously``)."""
        return False

    #: Request headers worth keeping with a stored webhook (signatures, ids); never credentials.
    kept_headers: ClassVar[tuple[str, ...]] = ()
    #: The channels this provider serves unless MESSAGE_PROVIDERS names others for a channel.
    default_channels: ClassVar[tuple[str, ...]] = ()
    #: Settings holding this provider's webhook secrets (each a list, for rotation).
    secret_settings: ClassVar[tuple[str, ...]] = ()

    @property
    def key(self) -> str:
        """This configured provider among others of the same ``name``: its circuit breaker, its pooled
        connections and its errors go by it. The name unless a subclass is another account (or
        region) of the same provider, which keeps the ``name`` (so the provider's webhooks and
        stored messages stay one) and sets its own key."""
        return self.name

    @abc.abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Sends one message; returns the result or raises ``ProviderError``."""

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        """The URLs this provider calls; none by default."""
        return []

    def verify(self, request: SignedRequest) -> None:
        """Raises ``SignatureInvalid`` unless the request is signed by this provider."""
        raise SignatureInvalid(f"{self.name} does not sign its webhooks; none is accepted while signatures are on.")

    def settings_problems(self) -> list[str]:
        """What is wrong with this provider's settings, for the start-up checks."""
        return []

    def parse_stored(self, raw: RawWebhook) -> WebhookItem:
        """A stored item read again (replays, orphans): the same parser as its first delivery."""
        raise NotImplementedError

    def canonical_message_id(self, provider_message_id: str) -> str:
        """The part of a message id that names the message in every event about it."""
        return provider_message_id

    def message_id_prefix(self, provider_message_id: str) -> str | None:
        """A prefix stored ids of this message start with, when events use another suffix; None if exact."""
        return None
