"""Meta Graph messaging: WhatsApp Cloud (POST /v{version}/{phone_number_id}/messages with
``messaging_product: whatsapp``) and Instagram (POST /v{version}/{ig_account_id}/messages with
``recipient``/``message``). Callbacks go to /api/webhooks/meta signed with X-Hub-Signature-256."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any

from providers.simulator.apis import (
    Accepted,
    FakeApi,
    Request,
    SendRequest,
    bearer_token,
    json_answer,
    retry_after_headers,
)
from providers.simulator.callbacks import Callback
from providers.simulator.signing import META_SIGNATURE, meta_signature
from providers.simulator.state import Answer

IDEMPOTENCY_HEADER = "Idempotency-Key"
WEBHOOK_PATH = "/api/webhooks/meta"
#: The WhatsApp Business Account id the simulated phone numbers belong to.
WABA_ID = "102290129340398"
DISPLAY_PHONE_NUMBER = "15550001234"
WHATSAPP_MAX_TEXT = 4096
INSTAGRAM_MAX_TEXT = 1000
_PHONE = re.compile(r"\+?[1-9][0-9]{6,14}")
_WHATSAPP_TYPES = {"text", "image", "audio", "video", "document", "sticker", "template", "interactive", "location"}

#: (code, subcode, message, type) per HTTP status, when a fault does not name a code.
_ERRORS: dict[int, tuple[int, int | None, str, str]] = {
    400: (131030, 2655007, "(#131030) Recipient phone number not in allowed list", "OAuthException"),
    401: (190, 463, "Invalid OAuth access token - Cannot parse access token", "OAuthException"),
    403: (10, None, "(#10) Application does not have permission for this action", "OAuthException"),
    404: (100, 33, "Unsupported post request.", "GraphMethodException"),
    429: (80007, None, "(#80007) Rate limit hit", "OAuthException"),
    500: (131000, None, "(#131000) Something went wrong", "OAuthException"),
    502: (1, None, "An unknown error occurred", "OAuthException"),
    503: (2, None, "Service temporarily unavailable", "OAuthException"),
}
_INSTAGRAM_RATE_LIMIT = (4, None, "(#4) Application request limit reached", "OAuthException")


def graph_error(
    status: int,
    code: int,
    message: str,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
    retry_after: int | None = None,
) -> Answer:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)[:22]
    return json_answer(status, {"error": error}, retry_after_headers(status, retry_after))


def wamid(recipient: str) -> str:
    """An opaque WhatsApp message id: ``wamid.`` + base64, as the Cloud API's look."""
    raw = b"\x1c\x18\x0b" + recipient.encode() + b"\x15\x02\x00\x11\x18\x12" + secrets.token_hex(9).upper().encode()
    return "wamid." + base64.b64encode(raw).decode("ascii")


def instagram_mid() -> str:
    return "m_" + secrets.token_urlsafe(64)


class FakeMeta(FakeApi):
    name = "meta"
    path = re.compile(r"/v(?P<version>[0-9]+\.[0-9]+)/(?P<node>[^/]+)/messages")

    def authenticate(self, request: Request) -> Answer | None:
        token = bearer_token(request)
        expected = self.credentials.meta_access_token
        if token is None:
            return graph_error(
                400, 2500, "An active access token must be used to query information about the current user."
            )
        if expected is not None and token != expected:
            return self.error(401)
        return None

    def parse(self, request: Request, match: re.Match[str]) -> SendRequest | Answer:
        try:
            payload = request.json()
        except ValueError:
            return graph_error(400, 100, "(#100) The request body is not valid JSON.", kind="OAuthException")
        if not isinstance(payload, dict):
            return graph_error(400, 100, "(#100) The request body must be a JSON object.")
        node = match.group("node")
        token = request.header(IDEMPOTENCY_HEADER)
        if "messaging_product" in payload or "recipient" not in payload:
            return self._parse_whatsapp(payload, node, token)
        return self._parse_instagram(payload, node, token)

    def _parse_whatsapp(self, payload: dict[str, Any], node: str, token: str | None) -> SendRequest | Answer:
        expected_node = self.credentials.whatsapp_phone_number_id
        if expected_node is not None and node != expected_node:
            return _unknown_node(node)
        if payload.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        to = payload.get("to")
        if not isinstance(to, str) or not to.strip():
            return graph_error(400, 100, "(#100) The parameter to is required.")
        if not _PHONE.fullmatch(to.strip()):
            return graph_error(400, 131009, "(#131009) Parameter value is not valid", subcode=2494010)
        kind = payload.get("type", "text")
        if kind not in _WHATSAPP_TYPES:
            return graph_error(400, 100, f"(#100) Param type must be one of {{{', '.join(sorted(_WHATSAPP_TYPES))}}}")
        text = payload.get("text")
        if kind == "text":
            body = text.get("body") if isinstance(text, dict) else None
            if not isinstance(body, str) or not body:
                return graph_error(400, 100, "(#100) The parameter text['body'] is required.")
            if len(body) > WHATSAPP_MAX_TEXT:
                return graph_error(
                    400, 100, f"(#100) Param text['body'] must be at most {WHATSAPP_MAX_TEXT} characters long."
                )
        return SendRequest(token=token, fields={"channel": "whatsapp", "node": node, "to": to.strip()})

    def _parse_instagram(self, payload: dict[str, Any], node: str, token: str | None) -> SendRequest | Answer:
        expected_node = self.credentials.instagram_account_id
        if expected_node is not None and node != expected_node:
            return _unknown_node(node)
        recipient = payload.get("recipient")
        recipient_id = recipient.get("id") if isinstance(recipient, dict) else None
        if not isinstance(recipient_id, str | int) or not str(recipient_id).strip():
            return graph_error(400, 100, "(#100) The parameter recipient is required.")
        message = payload.get("message")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return graph_error(400, 100, "(#100) The parameter message is required.")
        text = message.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > INSTAGRAM_MAX_TEXT):
            return graph_error(
                400, 100, f"(#100) Length of param message[text] must be less than or equal to {INSTAGRAM_MAX_TEXT}"
            )
        return SendRequest(token=token, fields={"channel": "instagram", "node": node, "to": str(recipient_id).strip()})

    def accept(self, send: SendRequest) -> Answer:
        fields = send.fields
        if fields["channel"] == "whatsapp":
            wa_id = fields["to"].lstrip("+")
            message_id = wamid(wa_id)
            body: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": fields["to"], "wa_id": wa_id}],
                "messages": [{"id": message_id}],
            }
        else:
            message_id = instagram_mid()
            body = {"recipient_id": fields["to"], "message_id": message_id}
        return json_answer(200, body, accepted=Accepted(self.name, fields["channel"], message_id, fields))

    def error(
        self, status: int, *, code: str | None = None, retry_after: int | None = None, send: SendRequest | None = None
    ) -> Answer:
        default_code, subcode, message, kind = _ERRORS.get(
            status, (1, None, "An unknown error occurred", "OAuthException")
        )
        if status == 429 and send is not None and send.fields["channel"] == "instagram":
            default_code, subcode, message, kind = _INSTAGRAM_RATE_LIMIT
        if code and code.isdigit():
            default_code, subcode = int(code), None
        return graph_error(status, default_code, message, subcode=subcode, kind=kind, retry_after=retry_after)

    def status_callbacks(self, accepted: Accepted, *, delivered: bool) -> list[Callback]:
        if accepted.channel == "whatsapp":
            statuses = ["sent", "delivered"] if delivered else ["sent", "failed"]
            payloads = [_whatsapp_status(accepted, status) for status in statuses]
        else:
            # Instagram has no failure receipts: an undelivered message simply gets no delivery event.
            payloads = [_instagram_delivery(accepted)] if delivered else []
        return [
            Callback(
                label=f"meta {accepted.channel} {accepted.message_id[:24]} {label}",
                url=self.config.callback_base_url + WEBHOOK_PATH,
                body=json.dumps(payload).encode(),
                content_type="application/json",
                sign=self.signer(),
            )
            for label, payload in payloads
        ]

    def signer(self):
        secret = self.credentials.meta_app_secret

        def sign(body: bytes) -> dict[str, str]:
            return {META_SIGNATURE: meta_signature(body=body, app_secret=secret)} if secret else {}

        return sign


def _unknown_node(node: str) -> Answer:
    return graph_error(
        400,
        100,
        f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation.",
        subcode=33,
        kind="GraphMethodException",
    )


def whatsapp_envelope(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": DISPLAY_PHONE_NUMBER,
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def _whatsapp_status(accepted: Accepted, status: str) -> tuple[str, dict[str, Any]]:
    entry: dict[str, Any] = {
        "id": accepted.message_id,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": accepted.fields["to"].lstrip("+"),
    }
    if status in ("sent", "delivered"):
        entry["conversation"] = {"id": "CONVERSATION_" + accepted.message_id[-12:], "origin": {"type": "service"}}
        entry["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if status == "failed":
        entry["errors"] = [
            {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }
        ]
    return status, whatsapp_envelope(accepted.fields["node"], {"statuses": [entry]})


def _instagram_delivery(accepted: Accepted) -> tuple[str, dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    account = accepted.fields["node"]
    event = {
        "sender": {"id": accepted.fields["to"]},
        "recipient": {"id": account},
        "timestamp": now_ms,
        "delivery": {"mids": [accepted.message_id], "watermark": now_ms},
    }
    return "delivered", {"object": "instagram", "entry": [{"id": account, "time": now_ms, "messaging": [event]}]}


class FakeSeedMeta(FakeMeta):
    """Seed 004's mock provider contract, ``POST /messages {channel, to, text}``: 200 on success, 429
    and 5xx for transient failures. A bearer token is checked only when META_ACCESS_TOKEN is set; the
    idempotency token is the ``Idempotency-Key`` header or ``clientMessageId``. Statuses come back as
    the Graph API's do."""

    path = re.compile(r"/messages")

    def authenticate(self, request: Request) -> Answer | None:
        expected = self.credentials.meta_access_token
        if expected is not None and bearer_token(request) != expected:
            return self.error(401)
        return None

    def parse(self, request: Request, match: re.Match[str]) -> SendRequest | Answer:
        try:
            payload = request.json()
        except ValueError:
            return graph_error(400, 100, "(#100) The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return graph_error(400, 100, "(#100) The request body must be a JSON object.")
        channel, to, text = payload.get("channel"), payload.get("to"), payload.get("text")
        if channel not in ("whatsapp", "instagram"):
            return graph_error(400, 100, "(#100) Param channel must be one of {whatsapp, instagram}")
        if not isinstance(to, str) or not to.strip():
            return graph_error(400, 100, "(#100) The parameter to is required.")
        if not isinstance(text, str) or not text:
            return graph_error(400, 100, "(#100) The parameter text is required.")
        token = request.header(IDEMPOTENCY_HEADER) or payload.get("clientMessageId")
        node = (
            self.credentials.whatsapp_phone_number_id
            if channel == "whatsapp"
            else self.credentials.instagram_account_id
        )
        fields = {"channel": channel, "node": node or "0", "to": to.strip()}
        return SendRequest(token=str(token) if token else None, fields=fields)

    def accept(self, send: SendRequest) -> Answer:
        graph = super().accept(send)
        accepted = graph.accepted
        body = {"messageId": accepted.message_id, "channel": accepted.channel, "to": send.fields["to"]}
        return json_answer(200, body, accepted=accepted)
