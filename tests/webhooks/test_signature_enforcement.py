"""Signatures enforced on every webhook endpoint once the provider's secret is configured."""

import json
import time
from urllib.parse import urlencode

import pytest
from django.core.management import call_command

from messaging.models import Message
from providers.sendgrid import hmac_signature as sendgrid_hmac_signature
from providers.twilio import json_url as twilio_json_url
from providers.twilio import signature_for as twilio_signature
from tests import payloads
from tests.factories import MessageFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

BASE = "http://testserver"
TOKEN = "twilio-secret"
KEY = "sendgrid-secret"


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.TWILIO_AUTH_TOKEN = [TOKEN]
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = [KEY]


def twilio_json(client, path, body, token=TOKEN):
    raw = json.dumps(body).encode()
    url = twilio_json_url(url=BASE + path, body=raw)
    signature = twilio_signature(url=url, params={}, token=token)
    return client.post(
        url.removeprefix(BASE), data=raw, content_type="application/json", headers={"X-Twilio-Signature": signature}
    )


def twilio_form(client, path, fields, token=TOKEN, tamper=None):
    signature = twilio_signature(url=BASE + path, params=fields, token=token)
    sent = {**fields, **(tamper or {})}
    return client.post(
        path,
        data=urlencode(sent),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )


def sendgrid(client, path, body, key=KEY, timestamp=None):
    raw = json.dumps(body).encode()
    stamp = str(timestamp or int(time.time()))
    signature = sendgrid_hmac_signature(timestamp=stamp, body=raw, key=key)
    return client.post(
        path,
        data=raw,
        content_type="application/json",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )


def assert_refused(response):
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    event = WebhookEvent.objects.get()
    assert event.outcome == "rejected"
    assert event.error.startswith("invalid_signature:")
    assert Message.objects.filter(direction="inbound").count() == 0


class TestInboundSms:
    def test_a_signed_json_delivery_is_processed(self, client):
        assert twilio_json(client, "/api/webhooks/sms", payloads.inbound_sms()).status_code == 200
        assert Message.objects.count() == 1

    def test_an_unsigned_delivery_is_refused_and_kept(self, client):
        response = client.post("/api/webhooks/sms", data=payloads.inbound_sms(), content_type="application/json")

        assert_refused(response)
        assert WebhookEvent.objects.get().body  # the raw request is still there for support

    def test_a_forged_signature_is_refused(self, client):
        assert_refused(twilio_json(client, "/api/webhooks/sms", payloads.inbound_sms(), token="guess"))


class TestSmsStatus:
    def test_a_signed_form_callback_is_applied(self, client):
        message = MessageFactory(direction="outbound", status="sent", provider_message_id="SM" + "4" * 32)

        response = twilio_form(
            client, "/api/webhooks/sms/status", payloads.twilio_status(message.provider_message_id, "delivered")
        )

        assert response.status_code == 200
        message.refresh_from_db()
        assert message.status == "delivered"

    def test_a_tampered_parameter_is_refused(self, client):
        fields = payloads.twilio_status("SM" + "4" * 32, "undelivered")
        assert_refused(twilio_form(client, "/api/webhooks/sms/status", fields, tamper={"MessageStatus": "delivered"}))

    def test_an_added_parameter_is_refused(self, client):
        fields = payloads.twilio_status("SM" + "4" * 32, "delivered")
        assert_refused(twilio_form(client, "/api/webhooks/sms/status", fields, tamper={"ErrorCode": "30003"}))

    def test_a_rotated_token_is_accepted_alongside_the_old_one(self, client, settings):
        settings.TWILIO_AUTH_TOKEN = ["new-token", TOKEN]
        fields = payloads.twilio_status("SM" + "4" * 32, "sent")

        assert twilio_form(client, "/api/webhooks/sms/status", fields, token="new-token").status_code == 200
        assert twilio_form(client, "/api/webhooks/sms/status", fields, token=TOKEN).status_code == 200


class TestSendGrid:
    def test_a_signed_event_batch_is_processed(self, client):
        response = sendgrid(
            client, "/api/webhooks/email/events", [payloads.sendgrid_event("x.filter001.1.0", "delivered")]
        )

        assert response.status_code == 200
        assert response.json()["orphan"] == 1

    def test_a_stale_timestamp_is_refused(self, client):
        stale = int(time.time()) - 301
        assert_refused(sendgrid(client, "/api/webhooks/email/events", [], timestamp=stale))

    def test_a_wrong_key_is_refused(self, client):
        assert_refused(sendgrid(client, "/api/webhooks/email/events", [], key="guess"))

    def test_the_inbound_email_webhook_uses_the_sendgrid_scheme(self, client):
        assert sendgrid(client, "/api/webhooks/email", payloads.inbound_email()).status_code == 200
        assert Message.objects.count() == 1

    def test_an_unsigned_inbound_email_is_refused(self, client):
        assert_refused(
            client.post("/api/webhooks/email", data=payloads.inbound_email(), content_type="application/json")
        )


def test_a_request_refused_for_its_signature_is_never_replayed(client, capsys):
    client.post("/api/webhooks/sms", data=payloads.inbound_sms(), content_type="application/json")

    call_command("replay_webhooks")

    assert "signature was invalid; never replayed" in capsys.readouterr().out
    assert WebhookEvent.objects.get().outcome == "rejected"
    assert Message.objects.count() == 0


def test_without_a_secret_the_provider_is_not_checked(client, settings):
    settings.TWILIO_AUTH_TOKEN = []

    response = client.post("/api/webhooks/sms", data=payloads.inbound_sms(), content_type="application/json")

    assert response.status_code == 200


def test_an_unsigned_request_is_kept_only_in_part_so_nobody_can_fill_the_database(client):
    body = json.dumps({**payloads.inbound_sms(), "body": "x" * 100_000})

    response = client.post("/api/webhooks/sms", data=body, content_type="application/json")

    assert response.status_code == 403
    event = WebhookEvent.objects.get()
    assert len(event.body) == 4096
    assert event.body_exact is False
    assert event.note.startswith(f"body truncated: {len(body)} bytes, sha256 ")
