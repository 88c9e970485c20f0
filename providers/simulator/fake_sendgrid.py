"""SendGrid v3 Mail Send: POST /v3/mail/send, answered 202 with ``X-Message-Id``."""

from __future__ import annotations

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
from providers.simulator.signing import SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP, sendgrid_ecdsa, sendgrid_hmac
from providers.simulator.state import Answer

EVENTS_PATH = "/api/webhooks/email/events"
TOKEN_ARG = "idempotency_token"
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    404: "resource not found",
    413: "The JSON payload you have included in your request is too large.",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
}


def sendgrid_error(
    status: int, errors: list[tuple[str, str | None, str | None]], retry_after: int | None = None
) -> Answer:
    body = {"errors": [{"message": message, "field": name, "help": help_} for message, name, help_ in errors]}
    headers = retry_after_headers(status, retry_after)
    if status == 429:
        reset = int(time.time()) + int(headers[0][1])
        headers += (("X-RateLimit-Limit", "600"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", str(reset)))
    return json_answer(status, body, headers)


def sg_message_id(message_id: str) -> str:
    """The id events carry: the X-Message-Id, then ``.filter...`` (the service matches on the part before)."""
    return f"{message_id}.filter001.{int(time.time())}.0"


class FakeSendGrid(FakeApi):
    name = "sendgrid"
    path = re.compile(r"/v3/mail/send")

    def authenticate(self, request: Request) -> Answer | None:
        key = bearer_token(request)
        expected = self.credentials.sendgrid_api_key
        if key is None or (expected is not None and key != expected):
            return self.error(401)
        return None

    def parse(self, request: Request, match: re.Match[str]) -> SendRequest | Answer:
        if len(request.body) > self.config.max_email_bytes:
            return self.error(413)
        try:
            mail = request.json()
        except ValueError:
            return sendgrid_error(400, [("Bad Request", None, None)])
        if not isinstance(mail, dict):
            return sendgrid_error(400, [("Bad Request", None, None)])
        errors = _validate(mail)
        if errors:
            return sendgrid_error(400, errors)
        raw_args = mail.get("custom_args")
        custom_args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        recipients = [
            to["email"] for personalization in mail["personalizations"] for to in personalization.get("to", [])
        ]
        token = custom_args.get(TOKEN_ARG)
        return SendRequest(
            token=str(token) if token else None,
            fields={"recipients": recipients, "from": mail["from"]["email"], "custom_args": custom_args},
        )

    def accept(self, send: SendRequest) -> Answer:
        message_id = secrets.token_urlsafe(16)  # 22 base64url characters, like SendGrid's
        return Answer(202, b"", (("X-Message-Id", message_id),), Accepted(self.name, "email", message_id, send.fields))

    def error(
        self, status: int, *, code: str | None = None, retry_after: int | None = None, send: SendRequest | None = None
    ) -> Answer:
        return sendgrid_error(status, [(_MESSAGES.get(status, "error"), None, None)], retry_after)

    def status_callbacks(self, accepted: Accepted, *, delivered: bool) -> list[Callback]:
        event_id = sg_message_id(accepted.message_id)
        custom = {name: value for name, value in accepted.fields["custom_args"].items() if isinstance(value, str)}
        batches: list[list[dict[str, Any]]] = [[], []]
        for email in accepted.fields["recipients"]:
            common = {
                **custom,
                "email": email,
                "smtp-id": f"<{accepted.message_id}@ismtpd-sim>",
                "sg_message_id": event_id,
            }
            batches[0].append(
                {**common, "event": "processed", "timestamp": int(time.time()), "sg_event_id": _event_id()}
            )
            final: dict[str, Any] = (
                {"event": "delivered", "response": "250 OK"}
                if delivered
                else {"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 User unknown"}
            )
            batches[1].append({**common, **final, "timestamp": int(time.time()), "sg_event_id": _event_id()})
        return [
            Callback(
                label=f"sendgrid {accepted.message_id} {batch[0]['event']}",
                url=self.config.callback_base_url + EVENTS_PATH,
                body=json.dumps(batch).encode(),
                content_type="application/json",
                sign=self.signer(),
            )
            for batch in batches
            if batch
        ]

    def signer(self):
        """Signature headers over a fresh timestamp: ECDSA when a private key is set, else HMAC."""
        private_key = self.credentials.sendgrid_webhook_private_key
        key = self.credentials.sendgrid_webhook_key

        def sign(body: bytes) -> dict[str, str]:
            timestamp = str(int(time.time()))
            if private_key:
                signature = sendgrid_ecdsa(timestamp=timestamp, body=body, private_key_pem=private_key)
            elif key:
                signature = sendgrid_hmac(timestamp=timestamp, body=body, key=key)
            else:
                return {}
            return {SENDGRID_TIMESTAMP: timestamp, SENDGRID_SIGNATURE: signature}

        return sign


def _event_id() -> str:
    return secrets.token_urlsafe(16)


def _validate(mail: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    errors: list[tuple[str, str | None, str | None]] = []
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            (
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                f"{_HELP}#-Personalizations-Errors",
            )
        )
        personalizations = []
    for index, personalization in enumerate(personalizations):
        tos = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(tos, list) or not tos:
            errors.append(
                (
                    "The to array is required for all personalization objects, and must have at least one email "
                    "object with a valid email address.",
                    f"personalizations.{index}.to",
                    f"{_HELP}#message.personalizations.to",
                )
            )
            continue
        for position, to in enumerate(tos):
            email = to.get("email") if isinstance(to, dict) else None
            if not isinstance(email, str) or not _EMAIL.fullmatch(email.strip()):
                errors.append(
                    (
                        "Does not contain a valid address.",
                        f"personalizations.{index}.to.{position}.email",
                        f"{_HELP}#message.personalizations.to",
                    )
                )
    sender = mail.get("from")
    if (
        not isinstance(sender, dict)
        or not isinstance(sender.get("email"), str)
        or not _EMAIL.fullmatch(sender["email"])
    ):
        errors.append(
            (
                "The from object must be provided for every email send. It is an object that requires the email "
                "parameter, but may also contain a name parameter.",
                "from.email",
                f"{_HELP}#message.from",
            )
        )
    templated = bool(mail.get("template_id"))
    every_personalization_has_subject = bool(personalizations) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not templated and not mail.get("subject") and not every_personalization_has_subject:
        errors.append(
            (
                "The subject is required. You can get around this requirement if you use a template with a subject "
                "defined or if every personalization has a subject defined.",
                "subject",
                f"{_HELP}#message.subject",
            )
        )
    content = mail.get("content")
    has_content = isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") and isinstance(block.get("value"), str) and block["value"]
        for block in content
    )
    if not templated and not has_content:
        errors.append(
            (
                "Unless a valid template_id is provided, the content parameter is required. There must be at least "
                "one defined content block. We typically suggest both text/plain and text/html blocks are "
                "included, but only one block is required.",
                "content",
                f"{_HELP}#message.content",
            )
        )
    custom_args = mail.get("custom_args")
    if custom_args is not None and (
        not isinstance(custom_args, dict) or not all(isinstance(value, str) for value in custom_args.values())
    ):
        errors.append(
            ("Custom args must be an object of string values.", "custom_args", f"{_HELP}#message.custom_args")
        )
    return errors
