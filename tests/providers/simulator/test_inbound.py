"""POST /simulate/inbound (seed 004's contract) and inbound SMS and e-mail toward the service."""

import base64
import hashlib
import hmac

from django.test import override_settings

from providers.base import SignedRequest
from providers.registry import provider_get
from providers.simulator.config import Credentials

SECRET = "meta-app-secret"
MOCK_META = "/api/webhooks/mock-meta"


def hub_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def event(**overrides) -> dict:
    return {"eventId": "evt_123", "channel": "whatsapp", "from": "user-123", "text": "Hi", **overrides}


def test_an_inbound_event_is_posted_once_signed_in_the_seed_shape(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(meta_app_secret=SECRET))

    reply = sim.post_json("/simulate/inbound", event(timestamp="2025-01-01T10:00:00Z"))

    assert reply.status == 200
    assert reply.json()["deliveries"] == [{"label": "evt_123", "status": 200, "attempts": 1, "error": None}]
    (request,) = receiver.on(MOCK_META)
    assert request.json() == {
        "eventId": "evt_123",
        "channel": "whatsapp",
        "from": "user-123",
        "text": "Hi",
        "timestamp": "2025-01-01T10:00:00Z",
    }
    assert request.header("x-hub-signature-256") == hub_signature(request.body)
    assert sim.stats()["inbound"]["posted"] == 1


def test_duplicate_posts_the_same_event_twice(start_simulator, receiver):
    sim = start_simulator()

    sim.post_json("/simulate/inbound", event(duplicate=True, channel="instagram"))

    requests = receiver.on(MOCK_META)
    assert [request.json()["eventId"] for request in requests] == ["evt_123", "evt_123"]
    assert requests[0].body == requests[1].body


def test_out_of_order_posts_a_batch_newest_first(start_simulator, receiver):
    sim = start_simulator()

    reply = sim.post_json("/simulate/inbound", event(outOfOrder=True, timestamp="2025-01-01T10:00:00Z"))

    assert reply.status == 200
    payloads = [request.json() for request in receiver.on(MOCK_META)]
    assert [payload["eventId"] for payload in payloads] == ["evt_123-3", "evt_123-2", "evt_123"]
    assert [payload["timestamp"] for payload in payloads] == [
        "2025-01-01T10:00:02Z",
        "2025-01-01T10:00:01Z",
        "2025-01-01T10:00:00Z",
    ]
    assert {payload["from"] for payload in payloads} == {"user-123"}


def test_out_of_order_and_duplicate_together_post_the_batch_twice(start_simulator, receiver):
    sim = start_simulator()

    sim.post_json("/simulate/inbound", event(outOfOrder=True, duplicate=True, count=2))

    assert [r.json()["eventId"] for r in receiver.on(MOCK_META)] == ["evt_123-2", "evt_123", "evt_123-2", "evt_123"]


def test_the_cloud_format_posts_meta_real_whatsapp_message_webhook(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(meta_app_secret=SECRET, whatsapp_phone_number_id="555"))

    sim.post_json("/simulate/inbound", event(format="cloud", **{"from": "15551230001"}))

    (request,) = receiver.on("/api/webhooks/meta")
    assert request.header("x-hub-signature-256") == hub_signature(request.body)
    value = request.json()["entry"][0]["changes"][0]["value"]
    assert value["metadata"]["phone_number_id"] == "555"
    (message,) = value["messages"]
    assert (message["id"], message["from"], message["text"]["body"]) == ("evt_123", "15551230001", "Hi")


def test_an_invalid_event_is_a_400_listing_the_fields(start_simulator, receiver):
    reply = start_simulator().post_json("/simulate/inbound", {"channel": "sms", "text": ""})

    assert reply.status == 400
    assert set(reply.json()["error"]["details"]) == {"eventId", "from", "text", "channel"}
    assert receiver.requests == []


def test_a_service_that_keeps_failing_makes_the_answer_502_with_each_outcome(start_simulator, receiver):
    receiver.fail_first = 1000
    sim = start_simulator(config={"callback_attempts": 2})

    reply = sim.post_json("/simulate/inbound", event())

    assert reply.status == 502
    (delivery,) = reply.json()["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == (500, 2)
    assert len(receiver.on(MOCK_META)) == 2


def test_inbound_sms_is_posted_as_the_service_expects_it_signed_as_twilio_signs_json(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(twilio_auth_token="twilio-token"))

    reply = sim.post_json(
        "/simulate/inbound/sms", {"from": "+18045551234", "to": "+12016661234", "body": "Hi", "duplicate": True}
    )

    assert reply.status == 200
    first, second = receiver.on("/api/webhooks/sms")
    assert first.body == second.body
    payload = first.json()
    assert payload["messaging_provider_id"].startswith("SM")
    assert (payload["from"], payload["to"], payload["body"], payload["type"]) == (
        "+18045551234",
        "+12016661234",
        "Hi",
        "sms",
    )
    assert payload["attachments"] is None
    assert payload["timestamp"].endswith("Z")
    assert first.query == "bodySHA256=" + hashlib.sha256(first.body).hexdigest()
    signed_url = f"{receiver.url}/api/webhooks/sms?{first.query}"
    expected = base64.b64encode(hmac.new(b"twilio-token", signed_url.encode(), hashlib.sha1).digest()).decode()
    assert first.header("x-twilio-signature") == expected
    signed = SignedRequest(
        method="POST", url=signed_url, headers=first.headers, body=first.body, content_type="application/json"
    )
    with override_settings(TWILIO_AUTH_TOKEN=["twilio-token"]):
        provider_get("twilio").verify(signed)


def test_inbound_email_is_posted_with_a_xillio_id_signed_as_sendgrid_signs(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(sendgrid_webhook_key="hook-key"))

    reply = sim.post_json(
        "/simulate/inbound/email",
        {"from": "contact@gmail.com", "to": "user@usehatchapp.com", "body": "<p>Hi</p>", "xillio_id": "email-9"},
    )

    assert reply.status == 200
    (request,) = receiver.on("/api/webhooks/email")
    assert request.json()["xillio_id"] == "email-9"
    assert request.json()["attachments"] == []
    timestamp = request.header("x-twilio-email-event-webhook-timestamp")
    expected = hmac.new(b"hook-key", timestamp.encode() + request.body, hashlib.sha256).hexdigest()
    assert request.header("x-twilio-email-event-webhook-signature") == expected
    signed = SignedRequest(
        method="POST", url=receiver.url + "/api/webhooks/email", headers=request.headers, body=request.body
    )
    with override_settings(SENDGRID_WEBHOOK_VERIFICATION_KEY=["hook-key"], SENDGRID_WEBHOOK_PUBLIC_KEY=[]):
        provider_get("sendgrid").verify(signed)


def test_inbound_sms_without_addresses_is_a_400(start_simulator, receiver):
    reply = start_simulator().post_json("/simulate/inbound/sms", {"body": "Hi"})

    assert reply.status == 400
    assert set(reply.json()["error"]["details"]) == {"from", "to"}
