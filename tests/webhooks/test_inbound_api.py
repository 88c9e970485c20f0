import json

import pytest

from conversations.models import Conversation
from messaging.models import Message
from tests import payloads
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def deliver(client, path, body, content_type="application/json", **headers):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type, headers=headers)


def test_an_inbound_sms_creates_a_received_message_and_counts_it_unread(client):
    body = payloads.inbound_sms(messaging_provider_id="message-1")

    response = deliver(client, "/api/webhooks/sms", body)

    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    message = Message.objects.get()
    assert response.json()["message_id"] == message.pk
    assert message.direction == "inbound"
    assert message.status == "received"
    assert message.type == "sms"
    assert message.provider == "twilio"
    assert message.provider_message_id == "message-1"
    assert message.from_address == "+18045551234"
    conversation = message.conversation
    assert conversation.unread_count == 1
    assert conversation.message_count == 1
    assert conversation.last_message_preview == "This is an incoming SMS message"


def test_an_inbound_mms_keeps_its_attachments(client):
    deliver(client, "/api/webhooks/sms", payloads.inbound_sms(type="mms", attachments=["https://e.com/i.jpg"]))

    message = Message.objects.get()
    assert message.type == "mms"
    assert message.attachments == ["https://e.com/i.jpg"]


def test_an_inbound_email_is_stored_with_its_html_body(client):
    body = payloads.inbound_email(xillio_id="message-3")

    response = deliver(client, "/api/webhooks/email", body)

    assert response.status_code == 200
    message = Message.objects.get()
    assert message.type == "email"
    assert message.provider == "sendgrid"
    assert message.provider_message_id == "message-3"
    assert message.body == body["body"]
    assert message.conversation.channel == "email"
    assert message.conversation.last_message_preview == "This is an incoming email with HTML content"


def test_every_request_is_kept_raw_with_its_outcome(client):
    body = payloads.inbound_sms()
    deliver(client, "/api/webhooks/sms", body, **{"X-Twilio-Signature": "abc", "Authorization": "Bearer secret"})

    event = WebhookEvent.objects.get()
    assert event.provider == "twilio"
    assert event.kind == "inbound"
    assert event.event_id == body["messaging_provider_id"]
    assert event.outcome == "processed"
    assert json.loads(event.body) == body
    assert event.headers["X-Twilio-Signature"] == "abc"
    assert "Authorization" not in event.headers, "credentials are never stored"
    assert event.message == Message.objects.get()
    assert event.processed_at is not None


def test_a_duplicate_delivery_answers_200_and_creates_nothing(client):
    body = payloads.inbound_sms(messaging_provider_id="dup-1")

    first = deliver(client, "/api/webhooks/sms", body)
    second = deliver(client, "/api/webhooks/sms", body)

    assert first.status_code == second.status_code == 200
    assert second.json() == {"status": "duplicate", "event_id": "dup-1", "message_id": first.json()["message_id"]}
    assert Message.objects.count() == 1
    assert Conversation.objects.get().unread_count == 1
    assert list(WebhookEvent.objects.order_by("id").values_list("outcome", flat=True)) == ["processed", "duplicate"]


def test_the_same_id_from_sms_and_email_providers_are_different_events(client):
    deliver(client, "/api/webhooks/sms", payloads.inbound_sms(messaging_provider_id="same"))
    deliver(client, "/api/webhooks/email", payloads.inbound_email(xillio_id="same"))

    assert Message.objects.count() == 2


def test_inbound_and_outbound_messages_of_a_pair_share_one_thread(client, api):
    api.post("/api/messages/sms", payloads.sms(), format="json")
    deliver(client, "/api/webhooks/sms", payloads.inbound_sms())

    conversation = Conversation.objects.get()
    assert conversation.message_count == 2
    assert conversation.unread_count == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{broken", 400),
        ("[]", 400),
        (json.dumps(payloads.inbound_sms(to="not-a-number")), 400),
        (json.dumps({k: v for k, v in payloads.inbound_sms().items() if k != "messaging_provider_id"}), 400),
        (json.dumps(payloads.inbound_sms(messaging_provider_id="")), 400),
    ],
)
def test_a_malformed_payload_is_400_and_still_kept_as_rejected(client, body, status):
    response = deliver(client, "/api/webhooks/sms", body)

    assert response.status_code == status
    assert "error" in response.json()
    event = WebhookEvent.objects.get()
    assert event.outcome == "rejected"
    assert event.body == body
    assert event.error
    assert Message.objects.count() == 0


def test_a_non_json_webhook_is_415_and_kept(client):
    response = deliver(client, "/api/webhooks/email", "from=a&to=b", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert WebhookEvent.objects.get().outcome == "rejected"


def test_a_rejected_delivery_does_not_block_the_corrected_retry(client):
    broken = payloads.inbound_sms(messaging_provider_id="fix-me", to="bad")
    fixed = payloads.inbound_sms(messaging_provider_id="fix-me")

    assert deliver(client, "/api/webhooks/sms", broken).status_code == 400
    response = deliver(client, "/api/webhooks/sms", fixed)

    assert response.json()["status"] == "processed"
    assert Message.objects.count() == 1


def test_undecodable_bytes_are_kept_visibly_replaced(client):
    response = client.post("/api/webhooks/sms", data=b"\xff\x00{", content_type="application/json")

    assert response.status_code == 400
    assert WebhookEvent.objects.get().body == "\ufffd\ufffd{"


def test_a_processing_failure_is_kept_as_error_and_the_retry_is_processed(client, monkeypatch):
    from webhooks import services

    body = payloads.inbound_sms(messaging_provider_id="flaky")

    def fail(**kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(services, "message_receive", fail)
    monkeypatch.setattr(services, "message_receive_sql", fail)  # the one-statement path (PostgreSQL)
    assert deliver(client, "/api/webhooks/sms", body).status_code == 500
    monkeypatch.undo()
    assert deliver(client, "/api/webhooks/sms", body).json()["status"] == "processed"

    outcomes = list(WebhookEvent.objects.order_by("id").values_list("outcome", "error"))
    assert outcomes[0] == ("error", "RuntimeError: database hiccup")
    assert outcomes[1][0] == "processed"
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"]
)
def test_json_content_types_with_parameters_or_any_case_are_accepted(client, content_type):
    response = deliver(client, "/api/webhooks/sms", payloads.inbound_sms(), content_type=content_type)

    assert response.status_code == 200
    assert response.json()["status"] == "processed"


def test_an_inbound_id_equal_to_an_outbound_sid_is_a_new_message_not_a_duplicate(client, api):
    sent = api.post("/api/messages/sms", payloads.sms(), format="json").json()

    response = deliver(
        client, "/api/webhooks/sms", payloads.inbound_sms(messaging_provider_id=sent["provider_message_id"])
    )

    assert response.json()["status"] == "processed"
    assert response.json()["message_id"] != sent["id"]
    assert Message.objects.filter(direction="inbound").count() == 1


@pytest.mark.parametrize("path", ["/api/webhooks/sms", "/api/webhooks/email"])
@pytest.mark.parametrize("value", ["\u0000", "\ud800", "x\u0000y"])
def test_unstorable_characters_in_any_field_are_400_and_still_kept(client, path, value):
    body = payloads.inbound_sms(type=value) if path.endswith("sms") else payloads.inbound_email(type=value)
    raw = json.dumps(body)  # escapes them as \\u0000 / \\ud800, as a provider's JSON would

    response = deliver(client, path, raw)

    assert response.status_code == 400
    event = WebhookEvent.objects.get()
    assert event.outcome == "rejected"
    assert "\x00" not in event.error
