"""Meta (WhatsApp Cloud API and Instagram messaging): sending, signatures, inbound and statuses.

Sending: with ``PROVIDER_MODE=mock`` an in-process mock of the Graph API's ``/{id}/messages``
(``MockProvider``): WhatsApp ids are ``wamid.`` + an opaque token, Instagram ids ``m_`` + an opaque
token. With ``PROVIDER_MODE=http`` the Graph API itself: ``POST {META_GRAPH_BASE_URL}/{version}/
{WHATSAPP_PHONE_NUMBER_ID}/messages`` (``messaging_product: whatsapp``) and ``.../{INSTAGRAM_ACCOUNT_ID}
/messages``, ``Authorization: Bearer {META_ACCESS_TOKEN}``; errors are Graph's ``{"error": {message,
type, code, error_subcode, fbtrace_id}}``. Either way the idempotency token travels in an
``Idempotency-Key`` header (Meta has none of its own; proxies and the simulator honour it).

Webhooks, both signed with ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` keyed
with the app secret (``META_APP_SECRET``, a list for rotation):

- ``/api/webhooks/meta``: Meta's real formats. WhatsApp Cloud API (``object:
  whatsapp_business_account``, ``entry[].changes[].value.messages[]`` and ``.statuses[]``) and
  Instagram messaging (``object: instagram``, ``entry[].messaging[]`` with ``message``, ``read`` and
  ``delivery``). Every message and status is an item of its own: stored (as a one-item delivery of
  the same format, so a replay reads it with the same parser), deduplicated (messages by wamid/mid,
  statuses by id + status) and applied alone. ``GET`` answers the ``hub.challenge`` handshake.
- ``/api/webhooks/mock-meta``: seed 004's gateway payload ``{eventId, channel, from, text, timestamp}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator

from core.errors import ApplicationError, ValidationFailed
from providers.base import (
    DELIVERED,
    DELIVERY,
    FAILED,
    INBOUND,
    READ,
    RECORD_ONLY,
    SENT,
    STATUS,
    UNKNOWN,
    InboundMessage,
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
from providers.mock import MockProvider
from providers.payloads import (
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_ID_LENGTH,
    as_kind,
    field_error,
    iso_time,
    item_raw,
    json_object,
    optional_text,
    required_text,
    status_name,
    text,
    unix_time,
    wrong_shape,
)
from providers.signing import equal, header

SIGNATURE_HEADER = "X-Hub-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
GRAPH_VERSION = "v21.0"
WHATSAPP = "whatsapp"
INSTAGRAM = "instagram"
WHATSAPP_OBJECT = "whatsapp_business_account"
INSTAGRAM_OBJECT = "instagram"

#: WhatsApp Cloud API message statuses.
STATUSES: dict[str, str] = {
    "sent": SENT,
    "delivered": DELIVERED,
    "read": READ,
    "failed": FAILED,
    "deleted": RECORD_ONLY,
    "warning": RECORD_ONLY,
}


def status_meaning(value: str) -> str:
    return STATUSES.get(value.strip().lower(), UNKNOWN)


#: Graph error codes that are worth retrying whatever the HTTP status (Meta answers some with 400).
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80007, 130429, 131000, 131016, 131048, 131056, 133004})
#: Of those, the ones that say the request was refused before anything was sent: rate limits and
#: "service unavailable". 1 ("unknown") and 131000 ("something went wrong") prove nothing.
NOT_ACCEPTED_CODES = frozenset({2, 4, 17, 32, 613, 80007, 130429, 131016, 131048, 131056, 133004})
NOT_ACCEPTED_STATUSES = frozenset({429, 503})


def _token(seed: str, salt: str) -> str:
    """An opaque, URL-safe token derived from the idempotency token: the same message, the same id."""
    raw = hashlib.sha256(f"{salt}:{seed}".encode()).digest()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class MetaProvider(MockProvider):
    name = "meta"
    default_channels: ClassVar[tuple[str, ...]] = ("whatsapp", "instagram")
    kept_headers: ClassVar[tuple[str, ...]] = (SIGNATURE_HEADER,)
    secret_settings: ClassVar[tuple[str, ...]] = ("META_APP_SECRET",)

    # Sending ---------------------------------------------------------------------------------------

    def request_for(self, message: OutboundMessage) -> dict[str, Any]:
        base = f"https://graph.facebook.com/{GRAPH_VERSION}"
        if message.channel == INSTAGRAM:
            payload: dict[str, Any] = {"recipient": {"id": message.to_address}, "message": {"text": message.body}}
            url = f"{base}/{message.from_address}/messages"
        else:
            payload = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": message.to_address,
                "type": "text",
                "text": {"body": message.body},
            }
            url = f"{base}/{settings.WHATSAPP_PHONE_NUMBER_ID or 'PHONE_NUMBER_ID'}/messages"
        return {
            "method": "POST",
            "url": url,
            "headers": {IDEMPOTENCY_HEADER: message.idempotency_token},
            "json": payload,
        }

    def idempotency_token(self, request: dict[str, Any]) -> str:
        return str(request["headers"][IDEMPOTENCY_HEADER])

    # HTTP mode -------------------------------------------------------------------------------------

    http_required_settings = ("META_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID", "INSTAGRAM_ACCOUNT_ID")

    def http_call(self, message: OutboundMessage) -> HttpCall:
        version = settings.META_GRAPH_VERSION
        node: str | None
        if message.channel == INSTAGRAM:
            node = settings.INSTAGRAM_ACCOUNT_ID
            payload: dict[str, Any] = {"recipient": {"id": message.to_address}, "message": {"text": message.body}}
        else:
            node = settings.WHATSAPP_PHONE_NUMBER_ID
            payload = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                # Graph takes the number without the "+" (the wa_id form); an opaque user id as is.
                "to": message.to_address.removeprefix("+"),
                "type": "text",
                "text": {"body": message.body},
            }
        return HttpCall(
            url=f"{settings.META_GRAPH_BASE_URL}/{version}/{node}/messages",
            headers={
                "Authorization": f"Bearer {settings.META_ACCESS_TOKEN}",
                IDEMPOTENCY_HEADER: message.idempotency_token,
            },
            json=payload,
        )

    def send_http(self, message: OutboundMessage) -> SendResult:
        response = http_post(provider=self.key, call=self.http_call(message))
        body = json_or_none(response)
        if response.is_success:
            message_id = _graph_message_id(body)
            if message_id is None:
                raise unreadable_answer(provider=self.key, response=response, what="a message id")
            return SendResult(provider=self.name, provider_message_id=message_id, status="accepted", response=body)
        raise self.http_error(response, body)

    def http_error(self, response: ProviderAnswer, body: Any) -> ProviderError:
        """Graph's ``error``: ``code`` (with ``error_subcode``) decides, as Meta sends rate limits and
        outages with a 400 too."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return error_from_status(
                provider=self.key,
                response=response,
                code=response.status_code,
                message=f"HTTP {response.status_code}: {text_snippet(response)}",
                not_accepted_statuses=NOT_ACCEPTED_STATUSES,
            )
        code = error["code"]
        subcode = error.get("error_subcode")
        message = str(error["message"]) if isinstance(error.get("message"), str) else "Graph API error"
        if isinstance(subcode, int):
            message = f"{message} (subcode {subcode})"
        transient = code in TRANSIENT_CODES or response.status_code == 429 or response.status_code >= 500
        return error_from_status(
            provider=self.key,
            response=response,
            code=code,
            message=message,
            not_accepted_statuses=NOT_ACCEPTED_STATUSES,
            retryable=transient,
            not_accepted=code in NOT_ACCEPTED_CODES or response.status_code in NOT_ACCEPTED_STATUSES,
        )

    def accept(self, message: OutboundMessage) -> SendResult:
        if message.channel == INSTAGRAM:
            mid = "m_" + _token(message.idempotency_token, "instagram")
            response: dict[str, Any] = {"recipient_id": message.to_address, "message_id": mid}
            return SendResult(provider=self.name, provider_message_id=mid, status="accepted", response=response)
        wamid = "wamid." + _token(message.idempotency_token, "whatsapp")
        response = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": message.to_address, "wa_id": message.to_address.lstrip("+")}],
            "messages": [{"id": wamid}],
        }
        return SendResult(provider=self.name, provider_message_id=wamid, status="accepted", response=response)

    # Webhooks --------------------------------------------------------------------------------------

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        from providers.meta_openapi import GRAPH_DOCS, HANDSHAKE_DOCS, MOCK_DOCS

        return [
            WebhookEndpoint(
                path="meta",
                kind=DELIVERY,
                parse=self.parse_graph,
                batch=True,
                handshake=self.handshake,
                openapi=GRAPH_DOCS,
                handshake_openapi=HANDSHAKE_DOCS,
            ),
            WebhookEndpoint(path="mock-meta", kind=INBOUND, parse=self.parse_mock, openapi=MOCK_DOCS),
        ]

    def verify(self, request: SignedRequest) -> None:
        secrets = settings.META_APP_SECRET
        if not secrets:
            raise SignatureInvalid("Meta signature verification is not configured.")
        received = header(request, SIGNATURE_HEADER)
        if not any(equal(signature_for(body=request.body, secret=secret), received) for secret in secrets):
            raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match this request.")

    def handshake(self, query: Mapping[str, str]) -> str:
        """Meta's subscription check: echo ``hub.challenge`` when ``hub.verify_token`` is ours."""
        expected = settings.META_VERIFY_TOKEN
        if query.get("hub.mode") != "subscribe":
            raise SignatureInvalid("hub.mode must be subscribe.", code="verification_failed")
        if not expected or not equal(expected, query.get("hub.verify_token", "")):
            raise SignatureInvalid("hub.verify_token does not match.", code="verification_failed")
        challenge = query.get("hub.challenge", "")
        if not challenge or len(challenge) > 256:
            raise ValidationFailed("hub.challenge is required.", details={"hub.challenge": ["This field is required."]})
        return challenge

    def parse_stored(self, raw: RawWebhook) -> WebhookItem:
        items = self.parse_graph(raw) if '"object"' in raw.body[:64] else self.parse_mock(raw)
        if len(items) != 1:
            raise ValidationFailed("A stored Meta event holds exactly one item.")
        if items[0].rejection is not None:
            raise items[0].rejection
        return items[0]

    # Seed 004's gateway payload ------------------------------------------------------------------------

    def parse_mock(self, raw: RawWebhook) -> list[WebhookItem]:
        payload = json_object(raw)
        event_id = required_text(payload, "eventId", max_length=MAX_ID_LENGTH, integers=False)
        channel = payload.get("channel")
        if channel not in (WHATSAPP, INSTAGRAM):
            raise field_error("channel", "Must be one of: whatsapp, instagram.")
        sender = required_text(payload, "from", max_length=320, integers=False)
        body = payload.get("text")
        if not isinstance(body, str):
            raise field_error("text", "This field is required." if body is None else "Must be a string.")
        inbound = InboundMessage(
            channel=channel,
            type=None,
            provider=self.name,
            provider_message_id=event_id,
            from_address=sender,
            to_address=_business_identity(channel, fallback=""),
            body=body,
            timestamp=iso_time(payload.get("timestamp"), name="timestamp"),
        )
        return [WebhookItem(raw=as_kind(raw, INBOUND), kind=INBOUND, parsed=inbound, event_id=event_id)]

    # Meta's Graph webhooks ---------------------------------------------------------------------------

    def parse_graph(self, raw: RawWebhook) -> list[WebhookItem]:
        payload = json_object(raw)
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise field_error("entry", "Must be a list of entries.")
        if payload.get("object") == WHATSAPP_OBJECT:
            return [item for entry in entries for item in self._whatsapp_entry(raw, entry)]
        if payload.get("object") == INSTAGRAM_OBJECT:
            return [item for entry in entries for item in self._instagram_entry(raw, entry)]
        raise field_error("object", f"Must be {WHATSAPP_OBJECT} or {INSTAGRAM_OBJECT}.")

    def _whatsapp_entry(self, raw: RawWebhook, entry: Any) -> list[WebhookItem]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            return [_rejected(raw, entry, INBOUND, wrong_shape("An entry must hold changes.", expected="changes"))]
        items = []
        for change in entry["changes"]:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                items.append(_rejected(raw, change, INBOUND, field_error("value", "Must be an object.")))
                continue
            context = {key: value[key] for key in ("messaging_product", "metadata", "contacts") if key in value}

            def single(kind_key: str, item: Any, context: dict = context, change: Any = change) -> dict:
                one_change = {"field": change.get("field", "messages"), "value": {**context, kind_key: [item]}}
                return {"object": WHATSAPP_OBJECT, "entry": [{"id": entry.get("id", ""), "changes": [one_change]}]}

            for message in _list(value, "messages"):
                stored = item_raw(raw, single("messages", message), kind=INBOUND)
                items.append(
                    _item(stored, INBOUND, lambda m=message, c=context: self._whatsapp_message(m, c), hint=message)
                )
            for status in _list(value, "statuses"):
                stored = item_raw(raw, single("statuses", status), kind=STATUS)
                items.append(_item(stored, STATUS, lambda s=status: self._whatsapp_status(s), hint=status))
        return items

    def _whatsapp_message(self, message: Any, context: Mapping[str, Any]) -> InboundMessage:
        if not isinstance(message, dict):
            raise wrong_shape("A message must be a JSON object.", expected="Expected a JSON object.")
        wamid = required_text(message, "id", integers=False)
        sender = required_text(message, "from", max_length=64)
        metadata = context.get("metadata") if isinstance(context.get("metadata"), dict) else {}
        business = text(metadata, "display_phone_number", required=False, max_length=64)  # type: ignore[arg-type]
        to_address = _business_identity(WHATSAPP, fallback="+" + re.sub(r"\D", "", business or ""))
        body, attachments = _whatsapp_content(message)
        return InboundMessage(
            channel=WHATSAPP,
            type=None,
            provider=self.name,
            provider_message_id=wamid,
            from_address=sender,
            to_address=to_address,
            body=body,
            attachments=attachments,
            timestamp=unix_time(message.get("timestamp")),
        )

    def _whatsapp_status(self, status: Any) -> StatusEvent:
        if not isinstance(status, dict):
            raise wrong_shape("A status must be a JSON object.", expected="Expected a JSON object.")
        wamid = required_text(status, "id", integers=False)
        name = status_name(status, "status")
        meaning = status_meaning(name)
        error = None
        if meaning == FAILED:
            errors = status.get("errors")
            first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
            code = optional_text(first, "code", max_length=64) or name
            title = optional_text(first, "title", "message", max_length=MAX_ERROR_MESSAGE_LENGTH)
            error = {"code": code, "message": title or "WhatsApp message failed"}
        return StatusEvent(
            provider=self.name,
            event_id=f"{wamid}:{name}",
            provider_message_id=wamid,
            event_type=name,
            meaning=meaning,
            error=error,
        )

    def _instagram_entry(self, raw: RawWebhook, entry: Any) -> list[WebhookItem]:
        if not isinstance(entry, dict) or not isinstance(entry.get("messaging"), list):
            return [_rejected(raw, entry, INBOUND, wrong_shape("An entry must hold messaging.", expected="messaging"))]
        items = []
        for event in entry["messaging"]:

            def single(event: Any) -> dict:
                return {"object": INSTAGRAM_OBJECT, "entry": [{"id": entry.get("id", ""), "messaging": [event]}]}

            if not isinstance(event, dict):
                items.append(_rejected(raw, single(event), INBOUND, wrong_shape("Not an object.", expected="object")))
            elif isinstance(event.get("message"), dict) and not event["message"].get("is_echo"):
                stored = item_raw(raw, single(event), kind=INBOUND)
                items.append(_item(stored, INBOUND, lambda e=event: self._instagram_message(e), hint=event))
            elif isinstance(event.get("message"), dict):  # an echo of a message we sent
                stored = item_raw(raw, single(event), kind=STATUS)
                items.append(
                    _item(stored, STATUS, lambda e=event: self._instagram_mark(e["message"], "echo", RECORD_ONLY))
                )
            elif isinstance(event.get("reaction"), dict):
                stored = item_raw(raw, single(event), kind=STATUS)
                items.append(
                    _item(stored, STATUS, lambda e=event: self._instagram_mark(e["reaction"], "reaction", RECORD_ONLY))
                )
            elif isinstance(event.get("read"), dict):
                stored = item_raw(raw, single(event), kind=STATUS)
                items.append(_item(stored, STATUS, lambda e=event: self._instagram_mark(e["read"], "read", READ)))
            elif isinstance(event.get("delivery"), dict) and isinstance(event["delivery"].get("mids"), list):
                for mid in event["delivery"]["mids"]:
                    one = {**event, "delivery": {**event["delivery"], "mids": [mid]}}
                    stored = item_raw(raw, single(one), kind=STATUS)
                    items.append(
                        _item(stored, STATUS, lambda m=mid: self._instagram_mark({"mid": m}, "delivery", DELIVERED))
                    )
            else:
                problem = "Unsupported Instagram event; expected message, reaction, read or delivery."
                items.append(_rejected(raw, single(event), STATUS, wrong_shape(problem, expected=problem)))
        return items

    def _instagram_message(self, event: Mapping[str, Any]) -> InboundMessage:
        message = event["message"]
        mid = required_text(message, "mid", integers=False)
        sender = required_text(_object(event, "sender"), "id", max_length=64)
        recipient = text(_object(event, "recipient"), "id", required=False, max_length=64)
        listed = message.get("attachments")
        attachments = [
            attachment["payload"]["url"]
            for attachment in (listed if isinstance(listed, list) else [])
            if isinstance(attachment, dict)
            and isinstance(attachment.get("payload"), dict)
            and _is_http_url(attachment["payload"].get("url"))
        ]
        body = message.get("text") if isinstance(message.get("text"), str) else ""
        timestamp = event.get("timestamp")
        return InboundMessage(
            channel=INSTAGRAM,
            type=None,
            provider=self.name,
            provider_message_id=mid,
            from_address=sender,
            to_address=_business_identity(INSTAGRAM, fallback=recipient or ""),
            body=body,
            attachments=attachments,
            timestamp=unix_time(
                timestamp / 1000 if isinstance(timestamp, int | float) and timestamp > 1e11 else timestamp
            ),
        )

    def _instagram_mark(self, mark: Any, name: str, meaning: str) -> StatusEvent:
        if not isinstance(mark, dict):
            raise wrong_shape(f"{name} must be an object.", expected="object")
        mid = required_text(mark, "mid", integers=False)
        return StatusEvent(
            provider=self.name, event_id=f"{mid}:{name}", provider_message_id=mid, event_type=name, meaning=meaning
        )


def _graph_message_id(body: Any) -> str | None:
    """``messages[0].id`` (WhatsApp Cloud) or ``message_id`` (Instagram)."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        candidate = messages[0].get("id")
    else:
        candidate = body.get("message_id")
    return candidate if isinstance(candidate, str) and candidate else None


def signature_for(*, body: bytes, secret: str) -> str:
    """``sha256=`` + hex(HMAC-SHA256(app secret, raw body)), as Meta sends X-Hub-Signature-256."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _business_identity(channel: str, *, fallback: str) -> str:
    """Our own address on the channel: the configured one, else what the delivery says."""
    configured = settings.WHATSAPP_PHONE_NUMBER if channel == WHATSAPP else settings.INSTAGRAM_ACCOUNT_ID
    return configured or fallback


def _whatsapp_content(message: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The text of a WhatsApp message: text bodies, media captions, button and list replies."""
    kind = message.get("type")
    content = message.get(kind) if isinstance(kind, str) else None
    content = content if isinstance(content, dict) else {}
    if kind == "text":
        body = content.get("body")
        return (body if isinstance(body, str) else ""), []
    for key in ("caption", "text", "title", "emoji"):
        if isinstance(content.get(key), str):
            return content[key], []
    interactive = content.get("button_reply") or content.get("list_reply")
    if isinstance(interactive, dict) and isinstance(interactive.get("title"), str):
        return interactive["title"], []
    return f"[{kind if isinstance(kind, str) else 'message'}]", []


def _list(value: Mapping[str, Any], key: str) -> list[Any]:
    items = value.get(key)
    return items if isinstance(items, list) else []


def _object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of the payload, or an error naming it when it is something else."""
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise field_error(key, "Must be an object.")
    return value


def _is_http_url(value: Any) -> bool:
    """An attachment URL worth keeping: http(s) and well formed (anything else is dropped, not shown)."""
    if not isinstance(value, str) or len(value) > 2048:
        return False
    try:
        URLValidator(schemes=["http", "https"])(value)
    except DjangoValidationError:
        return False
    return True


def _item(raw: RawWebhook, kind: str, parse: Any, *, hint: Any = None) -> WebhookItem:
    """Parses one item; a problem with it rejects that item alone (kept with its id if it has one).
    A value of an unexpected type deep inside the item is such a problem too, never a 500."""
    try:
        parsed = parse()
    except ApplicationError as rejection:
        return WebhookItem(raw=raw, kind=kind, rejection=rejection, event_id=_event_id_hint(hint))
    except (TypeError, AttributeError, KeyError, ValueError, OverflowError) as unreadable:
        unusable = ValidationFailed(f"The item cannot be read: {type(unreadable).__name__}.")
        return WebhookItem(raw=raw, kind=kind, rejection=unusable, event_id=_event_id_hint(hint))
    return WebhookItem(
        raw=raw, kind=kind, parsed=parsed, event_id=parsed.event_id if kind == STATUS else parsed.provider_message_id
    )


def _rejected(raw: RawWebhook, item: Any, kind: str, rejection: ApplicationError) -> WebhookItem:
    return WebhookItem(raw=item_raw(raw, item, kind=kind), kind=kind, rejection=rejection)


def _event_id_hint(item: Any) -> str:
    """The id of an item that could not be read, if it has a usable one."""
    if not isinstance(item, dict):
        return ""
    for candidate in (
        item.get("id"),
        (item.get("message") or {}).get("mid") if isinstance(item.get("message"), dict) else None,
    ):
        if isinstance(candidate, str) and 0 < len(candidate) <= 255:
            return candidate
    return ""
