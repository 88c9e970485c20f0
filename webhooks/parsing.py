"""Turning a provider's raw request into a validated payload."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from django.utils.http import parse_header_parameters

from conversations.models import Channel
from core.exceptions import validation_summary
from core.fields import StrictCharField
from messaging.serializers import MAX_ID_LENGTH, MessagePayloadSerializer, email_type_field, sms_type_field
from messaging.services import InboundMessage
from providers import statuses

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
    #: ``body`` holds exactly what was received (no undecodable byte or NUL had to be replaced).
    body_exact: bool = True


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
        body_exact=text.encode("utf-8") == raw,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(raw: RawWebhook) -> Any:
    if raw.content_type != "application/json" and not raw.content_type.endswith("+json"):
        raise PayloadRejected(
            status=415,
            code="unsupported_media_type",
            message=f"Unsupported media type {raw.content_type or '(none)'!r}; send application/json.",
        )
    try:
        return json.loads(raw.raw_bytes, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise PayloadRejected(status=400, code="malformed_json", message=f"JSON parse error - {exc}") from None


def _wrong_shape(message: str, *, expected: str) -> PayloadRejected:
    return PayloadRejected(
        status=400, code="validation_error", message=message, details={"non_field_errors": [expected]}
    )


def parse_json_object(raw: RawWebhook) -> dict[str, Any]:
    payload = _load_json(raw)
    if not isinstance(payload, dict):
        raise _wrong_shape("The body must be a JSON object.", expected="Expected a JSON object.")
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
INBOUND_SPECS = {spec.provider: spec for spec in (INBOUND_SMS, INBOUND_EMAIL)}


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


# Status callbacks ---------------------------------------------------------------------------------

#: The longest provider status or event name we store.
MAX_EVENT_TYPE_LENGTH = 64
#: Twilio sids are 34 characters; room to spare, and "<sid>:<status>" always fits an event id.
MAX_SID_LENGTH = 64
#: A provider status or event name as sent: a plain word, so it can never overflow or garble a note.
STATUS_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
#: The longest provider error message we store.
MAX_ERROR_MESSAGE_LENGTH = 1000


@dataclass(frozen=True)
class StatusEvent:
    """One provider event about an outbound message, mapped to what it means for us."""

    provider: str
    event_id: str
    provider_message_id: str
    #: The provider's own status or event name, lower-cased.
    event_type: str
    #: One of providers.statuses: sent, delivered, failed, record_only, unknown.
    meaning: str
    error: dict[str, str] | None = None


def _text(
    payload: dict[str, Any], *names: str, required: bool, max_length: int = MAX_ID_LENGTH, integers: bool = True
) -> str | None:
    """The first of ``names`` present, as a non-blank string of at most ``max_length`` characters.

    ``integers``: a JSON integer is taken as its decimal text; otherwise only strings are.
    """
    for name in names:
        value = payload.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            raise _field_error(names[0], "Must be a single string.")
        if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, int) and not integers):
            raise _field_error(names[0], "Must be a string.")
        text = str(value).strip()
        if not text:
            continue
        if len(text) > max_length:
            raise _field_error(names[0], f"Ensure this field has no more than {max_length} characters.")
        if "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text):
            raise _field_error(names[0], "Contains characters that cannot be stored.")
        return text
    if required:
        raise _field_error(names[0], "This field is required.")
    return None


def _status_name(payload: dict[str, Any], *names: str) -> str:
    """A provider status or event name: a plain word as sent (so lower-casing cannot lengthen it),
    compared lower-cased."""
    for name in names:
        value = payload.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            raise _field_error(names[0], "Must be a single string.")
        if not isinstance(value, str) or not re.fullmatch(STATUS_NAME_PATTERN, value):
            raise _field_error(names[0], "Must be a status name: up to 64 letters, digits, '_', '.' or '-'.")
        return value.lower()
    raise _field_error(names[0], "This field is required.")


def _optional_text(payload: dict[str, Any], *names: str, max_length: int) -> str | None:
    """An optional detail (an error code or reason): kept if it is usable text, never a reason to
    reject the event, since losing a bounce over its ``reason`` would be worse than a rough reason."""
    for name in names:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        text = str(value).strip().replace("\x00", "")
        text = text.encode("utf-8", errors="replace").decode("utf-8")[:max_length]
        if text:
            return text
    return None


def _field_error(name: str, problem: str) -> PayloadRejected:
    return PayloadRejected(status=400, code="validation_error", message=f"{name}: {problem}", details={name: [problem]})


def parse_form(raw: RawWebhook) -> dict[str, str | list[str]]:
    """The form's fields; a repeated one is the list of its values, which no text field accepts."""
    try:
        text = raw.raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadRejected(status=400, code="malformed_form", message="The form body is not UTF-8.") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=1000)
    except ValueError as exc:
        raise PayloadRejected(status=400, code="malformed_form", message=f"Form parse error - {exc}") from None
    # Twilio never repeats a parameter. Two values of a field the service reads (two statuses, say)
    # are refused rather than one of them guessed at; repeats of the other fields do no harm.
    fields: dict[str, str | list[str]] = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields


def parse_twilio_status(raw: RawWebhook) -> StatusEvent:
    """A Twilio status callback: form-encoded as Twilio sends it, or the same fields as JSON."""
    if raw.content_type == "application/x-www-form-urlencoded":
        payload: dict[str, Any] = parse_form(raw)
    elif raw.content_type == "application/json" or raw.content_type.endswith("+json"):
        payload = parse_json_object(raw)
    else:
        raise PayloadRejected(
            status=415,
            code="unsupported_media_type",
            message=f"Unsupported media type {raw.content_type or '(none)'!r}; "
            "send application/x-www-form-urlencoded or application/json.",
        )
    # Twilio posts every field as text; the JSON form of a callback takes the same strings. The four
    # fields read are checked whatever the status, so a callback is accepted or refused as a whole.
    sid = _text(payload, "MessageSid", "SmsSid", required=True, max_length=MAX_SID_LENGTH, integers=False)
    status = _status_name(payload, "MessageStatus", "SmsStatus")
    error_code = _text(payload, "ErrorCode", required=False, max_length=MAX_EVENT_TYPE_LENGTH, integers=False)
    error_message = _text(payload, "ErrorMessage", required=False, max_length=MAX_ERROR_MESSAGE_LENGTH, integers=False)
    meaning = statuses.twilio_status(status)
    error = None
    if meaning == statuses.FAILED:
        code = error_code or status
        message = error_message or statuses.TWILIO_ERROR_MESSAGES.get(code, f"Message {status}")
        error = {"code": code, "message": message}
    return StatusEvent(
        provider="twilio",
        event_id=f"{sid}:{status}",
        provider_message_id=sid,
        event_type=status,
        meaning=meaning,
        error=error,
    )


def parse_sendgrid_batch(raw: RawWebhook) -> list[Any]:
    """SendGrid posts a JSON array of events; a single event object is taken as an array of one.
    More than SENDGRID_MAX_EVENTS_PER_BATCH events is refused whole (413): each event is a row and a
    transaction, and a real batch (at most 768 KB) holds far fewer."""
    payload = _load_json(raw)
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list) and len(payload) > settings.SENDGRID_MAX_EVENTS_PER_BATCH:
        raise PayloadRejected(
            status=413,
            code="too_many_events",
            message=f"At most {settings.SENDGRID_MAX_EVENTS_PER_BATCH} events per request; got {len(payload)}.",
        )
    if not isinstance(payload, list):
        raise _wrong_shape("The body must be a JSON array of events.", expected="Expected a JSON array.")
    return payload


def parse_sendgrid_event(item: Any) -> StatusEvent:
    if not isinstance(item, dict):
        raise _wrong_shape("An event must be a JSON object.", expected="Expected a JSON object.")
    event_id = _text(item, "sg_event_id", required=True)
    name = _status_name(item, "event")
    message_id = _text(item, "sg_message_id", required=True)
    meaning = statuses.sendgrid_event(name)
    error = None
    if meaning == statuses.FAILED:
        code = _optional_text(item, "status", "type", max_length=MAX_EVENT_TYPE_LENGTH) or name
        reason = _optional_text(item, "reason", "response", max_length=MAX_ERROR_MESSAGE_LENGTH)
        error = {"code": code, "message": reason or f"Email {name}"}
    return StatusEvent(
        provider="sendgrid",
        event_id=event_id,
        provider_message_id=message_id,
        event_type=name,
        meaning=meaning,
        error=error,
    )


def sendgrid_event_raw(batch: RawWebhook, item: Any) -> RawWebhook:
    """One event of a batch as a request of its own: stored, deduplicated and replayed by itself."""
    # Readable text; a lone surrogate (legal in JSON escapes, not in a text column) becomes "?".
    dumped = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    body = dumped.encode("utf-8", errors="replace").decode()
    return RawWebhook(
        provider=batch.provider,
        kind=batch.kind,
        headers=batch.headers,
        content_type="application/json",
        body=body,
        raw_bytes=body.encode(),
        body_exact=batch.body_exact and body == dumped,
    )


def parse_status(raw: RawWebhook) -> StatusEvent:
    """A stored status event, parsed again (replays and orphans)."""
    if raw.provider == "twilio":
        return parse_twilio_status(raw)
    return parse_sendgrid_event(parse_json_object(raw))


def raw_from_event(event) -> RawWebhook:
    """A stored WebhookEvent as the request it was, to be processed again."""
    return RawWebhook(
        provider=event.provider,
        kind=event.kind,
        headers=event.headers,
        content_type=event.content_type,
        body=event.body,
        raw_bytes=event.body.encode("utf-8"),
        body_exact=event.body_exact,
    )
