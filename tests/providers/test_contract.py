"""Each provider's webhooks against the shared contract (tests/providers/contract.py)."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

from providers import meta, sendgrid, twilio
from tests.providers.contract import FailureStatusContract, Request, WebhookContract
from webhooks.models import WebhookEvent

BASE = "http://testserver"


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


class TestTwilioContract(FailureStatusContract, WebhookContract):
    provider = "twilio"
    channel = "sms"
    secrets = {"TWILIO_AUTH_TOKEN": ["twilio-token"]}

    def inbound(self, event_id, *, sender="+18045551234", body="Hello there"):
        payload = {"from": sender, "to": "+12016661234", "type": "sms", "messaging_provider_id": event_id, "body": body}
        return Request("/api/webhooks/sms", _json(payload))

    def invalid_inbound(self):
        return Request("/api/webhooks/sms", _json({"to": "+12016661234", "messaging_provider_id": "x", "body": "b"}))

    def status(self, provider_message_id, status):
        fields = {"MessageSid": provider_message_id, "MessageStatus": "undelivered" if status == "failed" else status}
        if status == "failed":
            fields["ErrorCode"] = "30003"
        return Request("/api/webhooks/sms/status", urlencode(fields).encode(), "application/x-www-form-urlencoded")

    def sign(self, request, secret):
        if request.content_type == "application/x-www-form-urlencoded":
            fields = dict(item.split("=", 1) for item in request.body.decode().split("&"))
            from urllib.parse import unquote_plus

            params = {unquote_plus(k): unquote_plus(v) for k, v in fields.items()}
            return {twilio.SIGNATURE_HEADER: twilio.signature_for(url=BASE + request.path, params=params, token=secret)}
        url = twilio.json_url(url=BASE + request.path, body=request.body)
        request.path = url.removeprefix(BASE)
        return {twilio.SIGNATURE_HEADER: twilio.signature_for(url=url, params={}, token=secret)}

    def outbound_id(self):
        return "SM" + uuid.uuid4().hex


class TestSendGridContract(FailureStatusContract, WebhookContract):
    provider = "sendgrid"
    channel = "email"
    secrets = {"SENDGRID_WEBHOOK_VERIFICATION_KEY": ["sendgrid-key"]}
    status_batch = True

    def inbound(self, event_id, *, sender="contact@example.com", body="<p>Hello there</p>"):
        payload = {"from": sender, "to": "support@usehatchapp.com", "xillio_id": event_id, "body": body}
        return Request("/api/webhooks/email", _json(payload))

    def invalid_inbound(self):
        return Request("/api/webhooks/email", _json({"to": "support@usehatchapp.com", "xillio_id": "x", "body": "b"}))

    def status(self, provider_message_id, status):
        event = {
            "event": "bounce" if status == "failed" else status,
            "sg_event_id": uuid.uuid4().hex,
            "sg_message_id": provider_message_id + ".filter0001.16.0",
            "status": "5.1.1",
            "reason": "550 no such user",
        }
        return Request("/api/webhooks/email/events", _json([event]))

    def sign(self, request, secret):
        stamp = str(int(time.time()))
        return {
            sendgrid.TIMESTAMP_HEADER: stamp,
            sendgrid.SIGNATURE_HEADER: sendgrid.hmac_signature(timestamp=stamp, body=request.body, key=secret),
        }

    def outbound_id(self):
        return uuid.uuid4().hex[:16]

    def test_a_repeated_status_is_a_duplicate_with_no_second_effect(self):
        message = self.outbound_message()
        request = self.status(message.provider_message_id, "delivered")

        self.post(request)
        self.post(request)

        outcomes = sorted(WebhookEvent.objects.filter(kind="status").values_list("outcome", flat=True))
        assert outcomes == ["duplicate", "processed"]


class MetaSigning:
    provider = "meta"
    secrets = {"META_APP_SECRET": ["meta-app-secret"]}

    def sign(self, request, secret):
        return {meta.SIGNATURE_HEADER: meta.signature_for(body=request.body, secret=secret)}


def whatsapp_delivery(*, messages=(), statuses=()) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "12015550100", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "14155550123"}],
        "messages": list(messages),
        "statuses": list(statuses),
    }
    return _json(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    )


def whatsapp_text(wamid, *, sender="14155550123", body="Hello there"):
    return {"from": sender, "id": wamid, "timestamp": "1730469600", "type": "text", "text": {"body": body}}


def whatsapp_status(wamid, status):
    item = {"id": wamid, "status": status, "timestamp": "1730469601", "recipient_id": "14155550123"}
    if status == "failed":
        item["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
    return item


class TestWhatsAppCloudContract(MetaSigning, FailureStatusContract, WebhookContract):
    channel = "whatsapp"
    status_batch = True

    def inbound(self, event_id, *, sender="14155550123", body="Hello there"):
        return Request(
            "/api/webhooks/meta", whatsapp_delivery(messages=[whatsapp_text(event_id, sender=sender, body=body)])
        )

    def invalid_inbound(self):
        return Request("/api/webhooks/meta", whatsapp_delivery(messages=[{"id": "wamid.x", "type": "text"}]))

    def status(self, provider_message_id, status):
        return Request("/api/webhooks/meta", whatsapp_delivery(statuses=[whatsapp_status(provider_message_id, status)]))

    def outbound_id(self):
        return "wamid." + uuid.uuid4().hex


def instagram_delivery(*events) -> bytes:
    return _json(
        {
            "object": "instagram",
            "entry": [{"id": "17841400000000000", "time": 1730469600000, "messaging": list(events)}],
        }
    )


def instagram_message(mid, *, sender="6789012345", text="Hello there"):
    return {
        "sender": {"id": sender},
        "recipient": {"id": "17841400000000000"},
        "timestamp": 1730469600000,
        "message": {"mid": mid, "text": text},
    }


class TestInstagramContract(MetaSigning, WebhookContract):
    channel = "instagram"
    status_batch = True

    def inbound(self, event_id, *, sender="6789012345", body="Hello there"):
        return Request("/api/webhooks/meta", instagram_delivery(instagram_message(event_id, sender=sender, text=body)))

    def invalid_inbound(self):
        return Request("/api/webhooks/meta", instagram_delivery(instagram_message("m_bad", sender="not a valid id!")))

    def status(self, provider_message_id, status):
        return Request(
            "/api/webhooks/meta",
            instagram_delivery(
                {"sender": {"id": "6789012345"}, "recipient": {"id": "1"}, "delivery": {"mids": [provider_message_id]}}
            ),
        )

    def outbound_id(self):
        return "m_" + uuid.uuid4().hex


class TestMockMetaContract(MetaSigning, WebhookContract):
    """Seed 004's gateway payload. It carries inbound messages only, so the status tests are Meta's above."""

    channel = "whatsapp"

    def inbound(self, event_id, *, sender="user-123", body="Hello there"):
        payload = {
            "eventId": event_id,
            "channel": "whatsapp",
            "from": sender,
            "text": body,
            "timestamp": "2025-01-01T10:00:00Z",
        }
        return Request("/api/webhooks/mock-meta", _json(payload))

    def invalid_inbound(self):
        payload = {"eventId": "evt-bad", "channel": "whatsapp", "from": "user-123", "text": "   "}
        return Request("/api/webhooks/mock-meta", _json(payload))

    def status(self, provider_message_id, status):
        return TestWhatsAppCloudContract().status(provider_message_id, status)

    def outbound_id(self):
        return "wamid." + uuid.uuid4().hex
