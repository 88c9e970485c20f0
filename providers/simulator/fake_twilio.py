"""Twilio Programmable Messaging: POST /2010-04-01/Accounts/{AccountSid}/Messages.json."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode

from providers.simulator.apis import Accepted, FakeApi, Request, SendRequest, json_answer, retry_after_headers
from providers.simulator.callbacks import Callback
from providers.simulator.signing import TWILIO_SIGNATURE, twilio_signature
from providers.simulator.state import Answer

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
STATUS_PATH = "/api/webhooks/sms/status"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)

#: Twilio's error code and message per HTTP status, when a fault does not name one.
_ERRORS = {
    400: (21211, "Invalid 'To' Phone Number"),
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


def segments(body: str) -> int:
    """SMS segments: GSM-7 160 (153 when concatenated), otherwise UCS-2 70 (67)."""
    if not body:
        return 1
    single, multi = (160, 153) if set(body) <= _GSM7 else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


def twilio_error(status: int, code: int, message: str, retry_after: int | None = None) -> Answer:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = retry_after_headers(status, retry_after)
    if status == 401:
        headers += (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
    return json_answer(status, body, headers)


class FakeTwilio(FakeApi):
    name = "twilio"
    path = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json")

    def authenticate(self, request: Request) -> Answer | None:
        user, password = _basic_auth(request)
        expected_sid = self.credentials.twilio_account_sid
        expected_token = self.credentials.twilio_auth_token
        if (
            user is None
            or (expected_sid is not None and user != expected_sid)
            or (expected_token is not None and password != expected_token)
        ):
            return self.error(401)
        return None

    def parse(self, request: Request, match: re.Match[str]) -> SendRequest | Answer:
        user, password = _basic_auth(request)
        if match.group("account") != user:
            return self.error(401)
        form: dict[str, list[str]] = {}
        for name, value in request.form() if request.media_type == "application/x-www-form-urlencoded" else []:
            form.setdefault(name, []).append(value)

        def one(name: str) -> str:
            return (form.get(name) or [""])[-1].strip()

        to, sender, body = one("To"), one("From"), (form.get("Body") or [""])[-1]
        media = [url for url in form.get("MediaUrl", []) if url.strip()]
        service = one("MessagingServiceSid")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not _E164.fullmatch(_strip_channel(to)):
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender and not service:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if sender and not _E164.fullmatch(_strip_channel(sender)):
            return twilio_error(400, 21212, f"Invalid 'From' Phone Number: {sender}")
        if not body and not media:
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if len(media) > 10:
            return twilio_error(400, 21623, "Number of media files exceeds allowed limit.")
        return SendRequest(
            token=request.header(IDEMPOTENCY_HEADER),
            fields={
                "account_sid": user,
                "auth_token": password,
                "to": to,
                "from": sender or None,
                "messaging_service_sid": service or None,
                "body": body,
                "media": media,
                "status_callback": one("StatusCallback") or None,
            },
        )

    def accept(self, send: SendRequest) -> Answer:
        fields = send.fields
        sid = ("MM" if fields["media"] else "SM") + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        account = fields["account_sid"]
        base = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}"
        resource = {
            "account_sid": account,
            "api_version": API_VERSION,
            "body": fields["body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields["from"],
            "messaging_service_sid": fields["messaging_service_sid"],
            "num_media": str(len(fields["media"])),
            "num_segments": str(segments(fields["body"])),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
            "to": fields["to"],
            "uri": f"{base}.json",
        }
        channel = "mms" if fields["media"] else "sms"
        return json_answer(201, resource, accepted=Accepted(self.name, channel, sid, fields))

    def error(
        self, status: int, *, code: str | None = None, retry_after: int | None = None, send: SendRequest | None = None
    ) -> Answer:
        default_code, message = _ERRORS.get(status, (20000 + status, "Error"))
        return twilio_error(status, int(code) if code and code.isdigit() else default_code, message, retry_after)

    def status_callbacks(self, accepted: Accepted, *, delivered: bool) -> list[Callback]:
        fields = accepted.fields
        signed_url = fields["status_callback"] or self.config.signed_base + STATUS_PATH
        token = self.credentials.twilio_auth_token or fields["auth_token"]
        final = ("delivered", None) if delivered else ("undelivered", "30003")
        callbacks = []
        for status, error_code in (("queued", None), ("sent", None), final):
            params = {
                "AccountSid": fields["account_sid"],
                "ApiVersion": API_VERSION,
                "From": fields["from"] or "",
                "MessageSid": accepted.message_id,
                "MessageStatus": status,
                "SmsSid": accepted.message_id,
                "SmsStatus": status,
                "To": fields["to"],
            }
            if fields["messaging_service_sid"]:
                params["MessagingServiceSid"] = fields["messaging_service_sid"]
            if error_code:
                params["ErrorCode"] = error_code
            if status == "delivered":
                params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
            callbacks.append(
                Callback(
                    label=f"twilio {accepted.message_id} {status}",
                    url=self.delivery_url(signed_url),
                    body=urlencode(params).encode(),
                    content_type="application/x-www-form-urlencoded",
                    sign=_form_signer(signed_url, params, token),
                )
            )
        return callbacks


def _form_signer(url: str, params: dict[str, str], token: str | None):
    def sign(_body: bytes) -> dict[str, str]:
        return {TWILIO_SIGNATURE: twilio_signature(url=url, params=params.items(), token=token)} if token else {}

    return sign


def _strip_channel(address: str) -> str:
    """Twilio addresses may carry a channel prefix (``whatsapp:+1555...``)."""
    return address.split(":", 1)[1] if ":" in address else address


def _basic_auth(request: Request) -> tuple[str | None, str | None]:
    scheme, _, encoded = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (user, password) if sep and user else (None, None)
