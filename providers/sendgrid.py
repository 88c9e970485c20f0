"""SendGrid (e-mail): sending, webhook signatures, inbound e-mail and the Event Webhook.

Sending: with ``PROVIDER_MODE=mock`` an in-process mock of v3 Mail Send (ids look like
``{16 hex}.filter001.{timestamp}.0``). With ``PROVIDER_MODE=http`` the real API, ``POST
{SENDGRID_BASE_URL}/v3/mail/send`` with ``Authorization: Bearer {SENDGRID_API_KEY}`` and JSON; a 202
names the message in ``X-Message-Id``; errors are ``{"errors": [{"message", "field", "help"}]}``.
Either way the idempotency token travels in ``custom_args.idempotency_token``.

Webhooks: ``/api/webhooks/email`` (an inbound e-mail, the scaffold's JSON with ``xillio_id``) and
``/api/webhooks/email/events`` (the Event Webhook: a JSON array, each event stored and applied on its
own). Both are signed with SendGrid's headers over ``timestamp + raw body``: ECDSA P-256 (SendGrid's
scheme, ``SENDGRID_WEBHOOK_PUBLIC_KEY``) or HMAC-SHA256 hex (the seed design's,
``SENDGRID_WEBHOOK_VERIFICATION_KEY``); either configured scheme passing is enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import time
from functools import lru_cache
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

from core.errors import ApplicationError, PayloadTooLarge
from providers.base import (
    DELIVERED,
    FAILED,
    INBOUND,
    RECORD_ONLY,
    SENT,
    STATUS,
    UNKNOWN,
    OutboundMessage,
    ProviderError,
    RawWebhook,
    SendResult,
    SignatureInvalid,
    SignedRequest,
    StatusEvent,
    WebhookEndpoint,
    WebhookItem,
)
from providers.http import (
    HttpCall,
    ProviderAnswer,
    error_from_status,
    http_post,
    json_or_none,
    text_snippet,
    unreadable_answer,
)
from providers.mock import MockProvider, digest
from providers.payloads import (
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    item_raw,
    json_object,
    load_json,
    optional_text,
    required_text,
    status_name,
    wrong_shape,
)
from providers.scaffold import parse_scaffold_inbound, scaffold_serializer
from providers.signing import equal, header

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")
SUBJECT_MAX_CHARS = 78
#: Answers SendGrid documents as refusals before anything is queued: rate limited, unavailable.
NOT_ACCEPTED_STATUSES = frozenset({429, 503})

#: SendGrid Event Webhook ``event`` values.
EVENTS: dict[str, str] = {
    "processed": SENT,
    "delivered": DELIVERED,
    "bounce": FAILED,
    "blocked": FAILED,
    "dropped": FAILED,
    # Delivery is still being attempted by SendGrid; nothing has changed for us yet.
    "deferred": RECORD_ONLY,
    # Engagement: recorded with the message, never a status change.
    "open": RECORD_ONLY,
    "click": RECORD_ONLY,
    "spamreport": RECORD_ONLY,
    "unsubscribe": RECORD_ONLY,
    "group_unsubscribe": RECORD_ONLY,
    "group_resubscribe": RECORD_ONLY,
}

InboundEmailSerializer = scaffold_serializer(
    name="InboundEmailSerializer", channel="email", id_field="xillio_id", types=("email",)
)


def event_meaning(value: str) -> str:
    return EVENTS.get(value.strip().lower(), UNKNOWN)


class SendGridProvider(MockProvider):
    name = "sendgrid"
    default_channels: ClassVar[tuple[str, ...]] = ("email",)
    kept_headers: ClassVar[tuple[str, ...]] = (SIGNATURE_HEADER, TIMESTAMP_HEADER)
    secret_settings: ClassVar[tuple[str, ...]] = ("SENDGRID_WEBHOOK_VERIFICATION_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY")

    # Sending ---------------------------------------------------------------------------------------

    def request_for(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": "https://api.sendgrid.com/v3/mail/send",
            "json": {
                "personalizations": [{"to": [{"email": message.to_address}]}],
                "from": {"email": message.from_address},
                "content": [{"type": "text/html", "value": message.body}],
                # Custom args come back on every event about the message, and carry the token.
                "custom_args": {"idempotency_token": message.idempotency_token},
            },
        }

    def idempotency_token(self, request: dict[str, Any]) -> str:
        return str(request["json"]["custom_args"]["idempotency_token"])

    # HTTP mode -------------------------------------------------------------------------------------

    http_required_settings = ("SENDGRID_API_KEY",)

    def http_call(self, message: OutboundMessage) -> HttpCall:
        mail = self.request_for(message)["json"]
        mail["subject"] = email_subject(message.body)
        return HttpCall(
            url=f"{settings.SENDGRID_BASE_URL}/v3/mail/send",
            headers={"Authorization": f"Bearer {settings.SENDGRID_API_KEY}"},
            json=mail,
        )

    def send_http(self, message: OutboundMessage) -> SendResult:
        response = http_post(provider=self.key, call=self.http_call(message))
        if response.is_success:
            message_id = response.headers.get("X-Message-Id", "").strip()
            if not message_id:
                raise unreadable_answer(provider=self.key, response=response, what="an X-Message-Id header")
            answer = {"statusCode": response.status_code, "message_id": message_id}
            return SendResult(provider=self.name, provider_message_id=message_id, status="accepted", response=answer)
        raise self.http_error(response)

    def http_error(self, response: ProviderAnswer) -> ProviderError:
        """SendGrid lists every problem in ``errors[]`` (``message``, ``field``); it has no error codes,
        so the code is the HTTP status."""
        body = json_or_none(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        problems = [
            f"{item['field']}: {item['message']}" if isinstance(item.get("field"), str) else str(item["message"])
            for item in errors or []
            if isinstance(item, dict) and isinstance(item.get("message"), str)
        ]
        return error_from_status(
            provider=self.key,
            response=response,
            code=response.status_code,
            message="; ".join(problems) or f"HTTP {response.status_code}: {text_snippet(response)}",
            not_accepted_statuses=NOT_ACCEPTED_STATUSES,
        )

    def accept(self, message: OutboundMessage) -> SendResult:
        message_id = f"{digest(message.idempotency_token, 'sendgrid')[:16]}.filter001.{int(time.time())}.0"
        response = {"statusCode": 202, "message_id": message_id, "body": None}
        return SendResult(provider=self.name, provider_message_id=message_id, status="accepted", response=response)

    # Message ids -----------------------------------------------------------------------------------

    def canonical_message_id(self, provider_message_id: str) -> str:
        """SendGrid answers a send with ``X-Message-Id`` and reports events with ``sg_message_id``:
        that id followed by ``.filter...``; both reduce to the part before ``.filter``."""
        return provider_message_id.split(".filter", 1)[0]

    def message_id_prefix(self, provider_message_id: str) -> str | None:
        # Stored as a full sg_message_id with another ".filter..." tail than the event's.
        return f"{self.canonical_message_id(provider_message_id)}.filter"

    # Webhooks --------------------------------------------------------------------------------------

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        from providers.sendgrid_openapi import EVENTS_DOCS, INBOUND_DOCS

        return [
            WebhookEndpoint(path="email", kind=INBOUND, parse=self.parse_inbound, openapi=INBOUND_DOCS),
            WebhookEndpoint(path="email/events", kind=STATUS, parse=self.parse_events, batch=True, openapi=EVENTS_DOCS),
        ]

    def parse_inbound(self, raw: RawWebhook) -> list[WebhookItem]:
        return parse_scaffold_inbound(raw, serializer_class=InboundEmailSerializer, provider=self.name)

    def parse_events(self, raw: RawWebhook) -> list[WebhookItem]:
        """A JSON array of events; a single event object is taken as an array of one. More than
        SENDGRID_MAX_EVENTS_PER_BATCH events is refused whole (413)."""
        payload = load_json(raw)
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list):
            raise wrong_shape("The body must be a JSON array of events.", expected="Expected a JSON array.")
        limit = settings.SENDGRID_MAX_EVENTS_PER_BATCH
        if len(payload) > limit:
            raise PayloadTooLarge(f"At most {limit} events per request; got {len(payload)}.", code="too_many_events")
        return [self._event_item(raw, item) for item in payload]

    def _event_item(self, batch: RawWebhook, item: Any) -> WebhookItem:
        raw = item_raw(batch, item, kind=STATUS)
        event_id = item.get("sg_event_id") if isinstance(item, dict) else None
        event_id = event_id if isinstance(event_id, str) else ""
        try:
            event = self._event(item)
        except ApplicationError as rejection:  # this event alone is rejected; the rest of the batch goes on
            return WebhookItem(raw=raw, kind=STATUS, rejection=rejection, event_id=event_id)
        return WebhookItem(raw=raw, kind=STATUS, parsed=event, event_id=event.event_id)

    def _event(self, item: Any) -> StatusEvent:
        if not isinstance(item, dict):
            raise wrong_shape("An event must be a JSON object.", expected="Expected a JSON object.")
        event_id = required_text(item, "sg_event_id")
        name = status_name(item, "event")
        message_id = required_text(item, "sg_message_id")
        meaning = event_meaning(name)
        error = None
        if meaning == FAILED:
            code = optional_text(item, "status", "type", max_length=MAX_EVENT_TYPE_LENGTH) or name
            reason = optional_text(item, "reason", "response", max_length=MAX_ERROR_MESSAGE_LENGTH)
            error = {"code": code, "message": reason or f"Email {name}"}
        return StatusEvent(
            provider=self.name,
            event_id=event_id,
            provider_message_id=message_id,
            event_type=name,
            meaning=meaning,
            error=error,
        )

    def settings_problems(self) -> list[str]:
        return public_key_problems(settings.SENDGRID_WEBHOOK_PUBLIC_KEY)

    def parse_stored(self, raw: RawWebhook) -> WebhookItem:
        if raw.kind == INBOUND:
            return self.parse_inbound(raw)[0]
        event = self._event(json_object(raw))
        return WebhookItem(raw=raw, kind=STATUS, parsed=event, event_id=event.event_id)

    def verify(self, request: SignedRequest) -> None:
        """Both schemes sign ``timestamp + raw body``; a timestamp outside the tolerance is refused
        before any signature is checked, so a captured request cannot be replayed later."""
        keys = settings.SENDGRID_WEBHOOK_VERIFICATION_KEY
        public_keys = settings.SENDGRID_WEBHOOK_PUBLIC_KEY
        if not keys and not public_keys:
            raise SignatureInvalid("SendGrid signature verification is not configured.")
        signature = header(request, SIGNATURE_HEADER)
        timestamp = _fresh_timestamp(request)
        hex_signature = signature.lower()
        if any(equal(hmac_signature(timestamp=timestamp, body=request.body, key=key), hex_signature) for key in keys):
            return
        signed = timestamp.encode("ascii") + request.body
        if any(_ecdsa_valid(public_key=public_key(text), data=signed, signature=signature) for text in public_keys):
            return
        raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match this request.")


def now() -> float:
    """The clock timestamps are checked against (a function, so tests can hold it still)."""
    return time.time()


def email_subject(body: str) -> str:
    """SendGrid requires a subject and messages carry none: EMAIL_SUBJECT when set, else the start of
    the body's text."""
    if settings.EMAIL_SUBJECT:
        return str(settings.EMAIL_SUBJECT)
    text = _SPACES.sub(" ", html.unescape(_TAGS.sub(" ", body))).strip()
    if len(text) > SUBJECT_MAX_CHARS:
        text = text[: SUBJECT_MAX_CHARS - 1].rstrip() + "\u2026"
    return text or "(no subject)"


def hmac_signature(*, timestamp: str | int, body: bytes, key: str) -> str:
    """hex(HMAC-SHA256(key, timestamp + body)): the seed design's scheme."""
    return hmac.new(key.encode("utf-8"), str(timestamp).encode("ascii") + body, hashlib.sha256).hexdigest()


def ecdsa_signature(*, timestamp: str | int, body: bytes, private_key: ec.EllipticCurvePrivateKey) -> str:
    """base64(DER(ECDSA-P256-SHA256(timestamp + body))): SendGrid's scheme, for tests and simulators."""
    der = private_key.sign(str(timestamp).encode("ascii") + body, _ECDSA_SHA256)
    return base64.b64encode(der).decode("ascii")


def _fresh_timestamp(request: SignedRequest) -> str:
    raw = header(request, TIMESTAMP_HEADER)
    if not _UNIX_SECONDS.fullmatch(raw):
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} must be a Unix time in whole seconds.")
    tolerance = settings.WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS
    if abs(now() - int(raw)) > tolerance:
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} is more than {tolerance} seconds from now.")
    return raw


def _ecdsa_valid(*, public_key: ec.EllipticCurvePublicKey, data: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), data, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=32)
def public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Base64 DER SubjectPublicKeyInfo (as SendGrid's console shows it) or PEM; raises ValueError."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.replace("\\n", "\n").encode("ascii"))
    else:
        key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def public_key_problems(keys: list[str]) -> list[str]:
    """For the start-up check: which configured public keys do not parse."""
    problems = []
    for position, key_text in enumerate(keys, start=1):
        try:
            public_key(key_text)
        except (ValueError, UnsupportedAlgorithm):
            problems.append(
                f"SENDGRID_WEBHOOK_PUBLIC_KEY: key {position} of {len(keys)} is not an ECDSA P-256 public key "
                "(base64 DER as SendGrid shows it, or PEM)."
            )
    return problems
