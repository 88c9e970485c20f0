"""Turning a provider's raw request into a validated payload."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from django.utils.http import parse_header_parameters

from conversations.models import Channel
from core.exceptions import validation_summary
from core.fields import StrictCharField
from messaging.serializers import MAX_ID_LENGTH, MessagePayloadSerializer, email_type_field, sms_type_field
from messaging.services import InboundMessage

#: Request headers worth keeping with an event; never credentials or cookies.
KEPT_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Forwarded-For",
    "X-Request-Id",
    "X-Twilio-Signature",
    "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp",
    "I-Twilio-Idempotency-Token",
)


class PayloadRejected(Exception):
    """The request cannot be processed as sent; answered 4xx and stored ``rejected``."""

    def __init__(self, *, status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class RawWebhook:
    provider: str
    kind: str
    headers: dict[str, str]
    content_type: str
    body: str
    raw_bytes: bytes


def raw_webhook(request: HttpRequest, *, provider: str, kind: str) -> RawWebhook:
    raw = request.body
    # Text columns cannot hold NUL; anything undecodable is kept visibly replaced.
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    media_type, _ = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    return RawWebhook(
        provider=provider,
        kind=kind,
        headers=headers,
        content_type=media_type.lower(),
        body=text,
        raw_bytes=raw,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(raw: RawWebhook) -> dict[str, Any]:
    if raw.content_type != "application/json" and not raw.content_type.endswith("+json"):
        raise PayloadRejected(
            status=415,
            code="unsupported_media_type",
            message=f"Unsupported media type {raw.content_type or '(none)'!r}; send application/json.",
        )
    try:
        payload = json.loads(raw.raw_bytes, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise PayloadRejected(status=400, code="malformed_json", message=f"JSON parse error - {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadRejected(
            status=400,
            code="validation_error",
            message="The body must be a JSON object.",
            details={"non_field_errors": ["Expected a JSON object."]},
        )
    return payload


class InboundSmsSerializer(MessagePayloadSerializer):
    channel = Channel.SMS
    type = sms_type_field()
    messaging_provider_id = StrictCharField(max_length=MAX_ID_LENGTH)


class InboundEmailSerializer(MessagePayloadSerializer):
    channel = Channel.EMAIL
    type = email_type_field()
    xillio_id = StrictCharField(max_length=MAX_ID_LENGTH)


@dataclass(frozen=True)
class InboundSpec:
    """How one provider's inbound webhook reads: its serializer and which field is its message id."""

    provider: str
    serializer_class: type[MessagePayloadSerializer]
    id_field: str


INBOUND_SMS = InboundSpec(provider="twilio", serializer_class=InboundSmsSerializer, id_field="messaging_provider_id")
INBOUND_EMAIL = InboundSpec(provider="sendgrid", serializer_class=InboundEmailSerializer, id_field="xillio_id")


def parse_inbound(raw: RawWebhook, spec: InboundSpec) -> InboundMessage:
    serializer = spec.serializer_class(data=parse_json_object(raw))
    if not serializer.is_valid():
        raise PayloadRejected(
            status=400,
            code="validation_error",
            message=validation_summary(serializer.errors),
            details=serializer.errors,
        )
    data = serializer.validated_data
    return InboundMessage(
        channel=data["channel"],
        type=data["type"],
        provider=spec.provider,
        provider_message_id=data[spec.id_field],
        from_address=data["from_address"],
        to_address=data["to_address"],
        body=data["body"],
        attachments=data["attachments"],
        timestamp=data["timestamp"] or timezone.now(),
    )
