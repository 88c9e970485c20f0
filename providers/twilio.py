"""Twilio (SMS and MMS): sending, webhook signatures, inbound messages and status callbacks.

Sending: with ``PROVIDER_MODE=mock`` an in-process mock of Twilio's Messages API (``MockProvider``):
sids ``SM``/``MM`` + 32 hex, Twilio's response fields. With ``PROVIDER_MODE=http`` the real API,
``POST {TWILIO_BASE_URL}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json``: form-encoded, HTTP
basic auth (account sid, auth token), ``StatusCallback``; errors are Twilio's ``{code, message,
more_info, status}``. Either way the idempotency token travels in ``I-Twilio-Idempotency-Token``.

Webhooks: ``/api/webhooks/sms`` (an inbound message, the scaffold's JSON with
``messaging_provider_id``) and ``/api/webhooks/sms/status`` (Twilio's status callback, form-encoded
as Twilio sends it or the same fields as JSON), both signed with ``X-Twilio-Signature``: base64
HMAC-SHA1 over the URL plus the sorted POST parameters, keyed with the auth token. JSON bodies are
covered through ``bodySHA256`` in the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from django.conf import settings

from providers.base import (
    DELIVERED,
    FAILED,
    INBOUND,
    READ,
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
    FORM,
    JSON,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_SID_LENGTH,
    as_kind,
    form_fields,
    is_json,
    json_object,
    required_text,
    status_name,
    text,
    unsupported,
)
from providers.scaffold import parse_scaffold_inbound, scaffold_serializer
from providers.segments import sms_segments
from providers.signing import equal, header

SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
STATUS_CALLBACK_PATH = "/api/webhooks/sms/status"
#: Answers Twilio documents as refusals before anything is queued: too many requests, unavailable.
NOT_ACCEPTED_STATUSES = frozenset({429, 503})
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Twilio's MessageStatus values for outbound messages.
STATUSES: dict[str, str] = {
    "accepted": SENT,
    "scheduled": SENT,
    "queued": SENT,
    "sending": SENT,
    "sent": SENT,
    "delivered": DELIVERED,
    "partially_delivered": DELIVERED,
    "read": READ,
    "undelivered": FAILED,
    "failed": FAILED,
    "canceled": FAILED,
    # Inbound-side statuses: nothing to change on an outbound message.
    "receiving": RECORD_ONLY,
    "received": RECORD_ONLY,
}

#: The documented meaning of Twilio's common delivery error codes, used when ErrorMessage is absent.
ERROR_MESSAGES: dict[str, str] = {
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "30010": "Message price exceeds max price",
    "21610": "Recipient has unsubscribed (STOP)",
    "21614": "Not a valid mobile number",
}

InboundSmsSerializer = scaffold_serializer(
    name="InboundSmsSerializer", channel="sms", id_field="messaging_provider_id", types=("sms", "mms")
)


def status_meaning(value: str) -> str:
    return STATUSES.get(value.strip().lower(), UNKNOWN)


class TwilioProvider(MockProvider):
    name = "twilio"
    default_channels: ClassVar[tuple[str, ...]] = ("sms",)
    account_sid = "AC" + "0" * 32
    kept_headers: ClassVar[tuple[str, ...]] = (SIGNATURE_HEADER, IDEMPOTENCY_HEADER)
    secret_settings: ClassVar[tuple[str, ...]] = ("TWILIO_AUTH_TOKEN",)

    # Sending ---------------------------------------------------------------------------------------

    def request_for(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Messages.json",
            "headers": {IDEMPOTENCY_HEADER: message.idempotency_token},
            "data": {
                "From": message.from_address,
                "To": message.to_address,
                "Body": message.body,
                "MediaUrl": message.attachments,
            },
        }

    def idempotency_token(self, request: dict[str, Any]) -> str:
        return str(request["headers"][IDEMPOTENCY_HEADER])

    # HTTP mode -------------------------------------------------------------------------------------

    http_required_settings = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    #: Settings of the account this class sends with: a subclass for a second account (or region)
    #: names its own, and a ``key`` of its own (see ``Provider.key``).
    base_url_setting = "TWILIO_BASE_URL"
    account_sid_setting = "TWILIO_ACCOUNT_SID"
    #: A list (rotation); the first is the API password. Every account's token must also be listed in
    #: TWILIO_AUTH_TOKEN, which verifies the status callbacks of all of them.
    auth_token_setting = "TWILIO_AUTH_TOKEN"

    def http_call(self, message: OutboundMessage) -> HttpCall:
        sid = getattr(settings, self.account_sid_setting, None) or ""
        tokens = getattr(settings, self.auth_token_setting, None) or [""]
        data: dict[str, Any] = {"To": message.to_address, "From": message.from_address, "Body": message.body}
        if message.attachments:
            data["MediaUrl"] = list(message.attachments)
        callback = status_callback_url()
        if callback:
            data["StatusCallback"] = callback
        return HttpCall(
            url=f"{getattr(settings, self.base_url_setting)}/2010-04-01/Accounts/{sid}/Messages.json",
            headers={IDEMPOTENCY_HEADER: message.idempotency_token, "Accept": "application/json"},
            data=data,
            auth=(sid, tokens[0]),
        )

    def send_http(self, message: OutboundMessage) -> SendResult:
        response = http_post(provider=self.key, call=self.http_call(message))
        body = json_or_none(response)
        if response.is_success:
            sid = body.get("sid") if isinstance(body, dict) else None
            if not isinstance(sid, str) or not sid:
                raise unreadable_answer(provider=self.key, response=response, what="a message sid")
            status = body.get("status") if isinstance(body.get("status"), str) else "queued"
            return SendResult(provider=self.name, provider_message_id=sid, status=status, response=body)
        raise self.http_error(response, body)

    def http_error(self, response: ProviderAnswer, body: Any) -> ProviderError:
        """Twilio's error body: ``code`` (its own error code), ``message``; the HTTP status decides."""
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            code = body.get("code")
            return error_from_status(
                provider=self.key,
                response=response,
                code=code if isinstance(code, int) else response.status_code,
                message=body["message"],
                not_accepted_statuses=NOT_ACCEPTED_STATUSES,
            )
        return error_from_status(
            provider=self.key,
            response=response,
            code=response.status_code,
            message=f"HTTP {response.status_code}: {text_snippet(response)}",
            not_accepted_statuses=NOT_ACCEPTED_STATUSES,
        )

    # The mock's answer -----------------------------------------------------------------------------

    def accept(self, message: OutboundMessage) -> SendResult:
        prefix = "MM" if message.type == "mms" else "SM"
        # Derived from the idempotency token: the same message always gets the same sid.
        sid = prefix + digest(message.idempotency_token, "twilio")[:32]
        now = format_datetime(datetime.now(UTC), usegmt=True)
        response: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": None,
            "from": message.from_address,
            "to": message.to_address,
            "body": message.body,
            "status": "queued",
            "num_segments": str(sms_segments(message.body)),
            "num_media": str(len(message.attachments)),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return SendResult(provider=self.name, provider_message_id=sid, status="queued", response=response)

    # Webhooks --------------------------------------------------------------------------------------

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        from providers.twilio_openapi import INBOUND_DOCS, STATUS_DOCS

        return [
            WebhookEndpoint(path="sms", kind=INBOUND, parse=self.parse_inbound, openapi=INBOUND_DOCS),
            WebhookEndpoint(
                path="sms/status", kind=STATUS, parse=self.parse_status, media_types=(FORM, JSON), openapi=STATUS_DOCS
            ),
        ]

    def parse_inbound(self, raw: RawWebhook) -> list[WebhookItem]:
        return parse_scaffold_inbound(raw, serializer_class=InboundSmsSerializer, provider=self.name)

    def parse_status(self, raw: RawWebhook) -> list[WebhookItem]:
        """A status callback: form-encoded as Twilio sends it, or the same fields as JSON."""
        if raw.content_type == FORM:
            payload: Mapping[str, Any] = form_fields(raw)
        elif is_json(raw.content_type):
            payload = json_object(raw)
        else:
            raise unsupported(raw, FORM, JSON)
        # Twilio posts every field as text; the JSON form takes the same strings. The four fields read
        # are checked whatever the status, so a callback is accepted or refused as a whole.
        sid = required_text(payload, "MessageSid", "SmsSid", max_length=MAX_SID_LENGTH, integers=False)
        status = status_name(payload, "MessageStatus", "SmsStatus")
        error_code = text(payload, "ErrorCode", required=False, max_length=MAX_EVENT_TYPE_LENGTH, integers=False)
        error_message = text(
            payload, "ErrorMessage", required=False, max_length=MAX_ERROR_MESSAGE_LENGTH, integers=False
        )
        meaning = status_meaning(status)
        error = None
        if meaning == FAILED:
            code = error_code or status
            error = {"code": code, "message": error_message or ERROR_MESSAGES.get(code, f"Message {status}")}
        event = StatusEvent(
            provider=self.name,
            event_id=f"{sid}:{status}",
            provider_message_id=sid,
            event_type=status,
            meaning=meaning,
            error=error,
        )
        return [WebhookItem(raw=as_kind(raw, STATUS), kind=STATUS, parsed=event, event_id=event.event_id)]

    def parse_stored(self, raw: RawWebhook) -> WebhookItem:
        items = self.parse_inbound(raw) if raw.kind == INBOUND else self.parse_status(raw)
        return items[0]

    def verify(self, request: SignedRequest) -> None:
        """Checks X-Twilio-Signature against every configured auth token.

        Form bodies are signed as sorted parameters. Any other body is signed through ``bodySHA256``
        in the URL, so the body must hash to that value; a non-empty body without it is not covered.
        """
        tokens = settings.TWILIO_AUTH_TOKEN
        if not tokens:
            raise SignatureInvalid("Twilio signature verification is not configured.")
        signature = header(request, SIGNATURE_HEADER)
        params = _form_params(request)
        candidates = (
            signature_for(url=url, params=params, token=token) for url in _url_variants(request.url) for token in tokens
        )
        if not any(equal(candidate, signature) for candidate in candidates):
            raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match this request.")
        if request.content_type != FORM or "bodySHA256=" in urlsplit(request.url).query:
            _check_body_hash(request)


def status_callback_url() -> str | None:
    """Where Twilio posts status callbacks: TWILIO_STATUS_CALLBACK_URL, else PUBLIC_BASE_URL + the
    status path; None (Twilio then uses the sending number's configured URL) when neither is set."""
    if settings.TWILIO_STATUS_CALLBACK_URL:
        return str(settings.TWILIO_STATUS_CALLBACK_URL)
    if settings.PUBLIC_BASE_URL:
        return f"{settings.PUBLIC_BASE_URL}{STATUS_CALLBACK_PATH}"
    return None


def signature_for(*, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]], token: str) -> str:
    """base64(HMAC-SHA1(token, url + name + value for each parameter sorted by name, then value)).
    A parameter repeated with the same value counts once, as twilio-python signs it."""
    pairs = params.items() if isinstance(params, Mapping) else params
    payload = url + "".join(name + value for name, value in sorted(set(pairs)))
    mac = hmac.new(token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def json_url(*, url: str, body: bytes) -> str:
    """The URL Twilio signs for a non-form body: the URL with ``bodySHA256=<hex sha256 of body>`` added."""
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}bodySHA256={hashlib.sha256(body).hexdigest()}"


def _form_params(request: SignedRequest) -> list[tuple[str, str]]:
    if request.content_type != FORM:
        return []
    return parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _check_body_hash(request: SignedRequest) -> None:
    query = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
    expected = next((value for name, value in query if name == "bodySHA256"), None)
    if expected is None:
        if request.body:
            raise SignatureInvalid("The body is not signed: a non-form body needs bodySHA256 in the URL.")
        return
    if not equal(hashlib.sha256(request.body).hexdigest(), expected.lower()):
        raise SignatureInvalid("The body does not match the bodySHA256 in the URL.")


def _url_variants(url: str) -> list[str]:
    """The URL as received, without its port, and with the scheme's default port.

    Twilio is not consistent about whether the signed URL carries the port; twilio-python's
    RequestValidator accepts either, and so do we.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if port is not None:
        netloc = parts.netloc.rsplit(":", 1)[0]
    elif parts.scheme in _DEFAULT_PORTS:
        netloc = f"{parts.netloc}:{_DEFAULT_PORTS[parts.scheme]}"
    else:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=netloc))]
