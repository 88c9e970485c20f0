"""Inbound traffic the simulator pushes to the service on request (POST /simulate/inbound...).

Each request becomes a batch of events: one by default; ``outOfOrder`` makes ``count`` events (3 by
default) in one conversation, timestamps one second apart, delivered newest first; ``duplicate``
delivers every event of the batch a second time after the batch.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from providers.simulator.apis import FakeApi
from providers.simulator.callbacks import Callback
from providers.simulator.config import SimulatorConfig
from providers.simulator.fake_meta import whatsapp_envelope
from providers.simulator.signing import (
    META_SIGNATURE,
    TWILIO_SIGNATURE,
    meta_signature,
    twilio_body_url,
    twilio_signature,
)

MOCK_META_PATH = "/api/webhooks/mock-meta"
META_PATH = "/api/webhooks/meta"
SMS_PATH = "/api/webhooks/sms"
EMAIL_PATH = "/api/webhooks/email"
CHANNELS = ("whatsapp", "instagram")
FORMATS = ("mock-meta", "cloud")
MAX_BATCH = 50
_CONTROL_FIELDS = ("duplicate", "outOfOrder", "count")


class InboundInvalid(ValueError):
    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class Batch:
    """The callbacks to post, in posting order."""

    callbacks: list[Callback]


def meta_batch(body: Any, config: SimulatorConfig) -> Batch:
    """Seed 004's ``{eventId, channel, from, text, timestamp?, duplicate?, outOfOrder?}``; ``format:
    "cloud"`` posts Meta's real WhatsApp Cloud / Instagram shape to /api/webhooks/meta instead."""
    body = _object(body)
    errors = {}
    for name in ("eventId", "from", "text"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            errors[name] = ["A non-empty string is required."]
    if body.get("channel") not in CHANNELS:
        errors["channel"] = [f"One of {', '.join(CHANNELS)}."]
    form = body.get("format", "mock-meta")
    if form not in FORMATS:
        errors["format"] = [f"One of {', '.join(FORMATS)}."]
    first = _timestamp(body, errors)
    count = _count(body, errors)
    if errors:
        raise InboundInvalid("The inbound event is not valid.", errors)
    secret = config.credentials.meta_app_secret
    callbacks = []
    for index in range(count):
        event_id = body["eventId"] if index == 0 else f"{body['eventId']}-{index + 1}"
        text = body["text"] if index == 0 else f"{body['text']} ({index + 1})"
        moment = first + timedelta(seconds=index)
        if form == "mock-meta":
            payload: dict[str, Any] = {
                "eventId": event_id,
                "channel": body["channel"],
                "from": body["from"],
                "text": text,
                "timestamp": moment.isoformat().replace("+00:00", "Z"),
            }
            path = MOCK_META_PATH
        else:
            payload = _cloud_payload(body["channel"], body["from"], event_id, text, moment, config)
            path = META_PATH
        callbacks.append(
            Callback(
                label=event_id,
                url=config.callback_base_url + path,
                body=json.dumps(payload).encode(),
                content_type="application/json",
                sign=_meta_signer(secret),
            )
        )
    return Batch(_arrange(callbacks, body))


def sms_batch(body: Any, config: SimulatorConfig) -> Batch:
    """The service's inbound SMS/MMS webhook body (``messaging_provider_id``), signed as Twilio signs
    a JSON body: ``bodySHA256`` in the URL, X-Twilio-Signature over that URL."""
    body = _object(body)
    payload = _passthrough(body)
    payload.setdefault("type", "mms" if payload.get("attachments") else "sms")
    payload.setdefault("attachments", None)
    return _service_batch(
        body,
        payload,
        id_field="messaging_provider_id",
        new_id=lambda: "SM" + secrets.token_hex(16),
        sign_for=lambda callback_payload: _twilio_json(callback_payload, config),
    )


def email_batch(body: Any, config: SimulatorConfig, sendgrid: FakeApi) -> Batch:
    """The service's inbound e-mail webhook body (``xillio_id``), signed as SendGrid events are."""
    body = _object(body)
    payload = _passthrough(body)
    payload.setdefault("attachments", [])
    sign = sendgrid.signer()  # type: ignore[attr-defined]

    def build(callback_payload: dict[str, Any]) -> tuple[str, bytes, Any]:
        return config.callback_base_url + EMAIL_PATH, json.dumps(callback_payload).encode(), sign

    return _service_batch(
        body, payload, id_field="xillio_id", new_id=lambda: "email-" + secrets.token_hex(8), sign_for=build
    )


def _service_batch(body, payload, *, id_field, new_id, sign_for) -> Batch:
    errors: dict[str, list[str]] = {}
    for name in ("from", "to"):
        if not isinstance(payload.get(name), str) or not payload[name].strip():
            errors[name] = ["A non-empty string is required."]
    first = _timestamp(body, errors)
    count = _count(body, errors)
    if errors:
        raise InboundInvalid("The inbound message is not valid.", errors)
    base_id = payload.get(id_field) or new_id()
    callbacks = []
    for index in range(count):
        item = {
            **payload,
            id_field: base_id if index == 0 else f"{base_id}-{index + 1}",
            "timestamp": (first + timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
        }
        if index:
            item["body"] = f"{payload.get('body', '')} ({index + 1})"
        url, data, sign = sign_for(item)
        callbacks.append(Callback(label=item[id_field], url=url, body=data, content_type="application/json", sign=sign))
    return Batch(_arrange(callbacks, body))


def _twilio_json(payload: dict[str, Any], config: SimulatorConfig) -> tuple[str, bytes, Any]:
    data = json.dumps(payload).encode()
    signed_url = twilio_body_url(url=config.signed_base + SMS_PATH, body=data)
    query = signed_url[signed_url.index("?") :]
    token = config.credentials.twilio_auth_token

    def sign(_body: bytes) -> dict[str, str]:
        return {TWILIO_SIGNATURE: twilio_signature(url=signed_url, params=(), token=token)} if token else {}

    return config.callback_base_url + SMS_PATH + query, data, sign


def _cloud_payload(channel: str, sender: str, event_id: str, text: str, moment: datetime, config: SimulatorConfig):
    if channel == "whatsapp":
        phone_number_id = config.credentials.whatsapp_phone_number_id or "106540352242922"
        value = {
            "contacts": [{"profile": {"name": sender}, "wa_id": sender.lstrip("+")}],
            "messages": [
                {
                    "from": sender.lstrip("+"),
                    "id": event_id,
                    "timestamp": str(int(moment.timestamp())),
                    "text": {"body": text},
                    "type": "text",
                }
            ],
        }
        return whatsapp_envelope(phone_number_id, value)
    account = config.credentials.instagram_account_id or "17841400000000000"
    millis = int(moment.timestamp() * 1000)
    event = {
        "sender": {"id": sender},
        "recipient": {"id": account},
        "timestamp": millis,
        "message": {"mid": event_id, "text": text},
    }
    return {"object": "instagram", "entry": [{"id": account, "time": millis, "messaging": [event]}]}


def _meta_signer(secret: str | None):
    def sign(body: bytes) -> dict[str, str]:
        return {META_SIGNATURE: meta_signature(body=body, app_secret=secret)} if secret else {}

    return sign


def _arrange(callbacks: list[Callback], body: dict[str, Any]) -> list[Callback]:
    ordered = list(reversed(callbacks)) if body.get("outOfOrder") else callbacks
    return ordered + ordered if body.get("duplicate") else ordered


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InboundInvalid("The body must be a JSON object.")
    for name in ("duplicate", "outOfOrder"):
        if name in body and not isinstance(body[name], bool):
            raise InboundInvalid("The inbound event is not valid.", {name: ["Must be true or false."]})
    return body


def _passthrough(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in _CONTROL_FIELDS}


def _timestamp(body: dict[str, Any], errors: dict[str, list[str]]) -> datetime:
    raw = body.get("timestamp")
    if raw is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        errors["timestamp"] = ["An ISO-8601 date and time is required."]
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _count(body: dict[str, Any], errors: dict[str, list[str]]) -> int:
    if not body.get("outOfOrder"):
        return 1
    count = body.get("count", 3)
    if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_BATCH:
        errors["count"] = [f"A whole number from 2 to {MAX_BATCH} (the size of an out-of-order batch)."]
        return 1
    return count
