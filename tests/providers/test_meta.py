"""WhatsApp and Instagram through the Meta-like provider: sends, addresses, deliveries, statuses, handshake."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from conversations.addresses import InvalidAddress, normalise_scoped_id, normalise_whatsapp
from conversations.models import Conversation
from messaging.models import Message
from messaging.outbox import outbox_deliver_now
from providers import meta
from tests.providers.test_contract import (
    instagram_delivery,
    instagram_message,
    whatsapp_delivery,
    whatsapp_status,
    whatsapp_text,
)
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def send(api, **body):
    headers = body.pop("headers", {})
    return api.post("/api/messages", body, format="json", headers=headers)


def post_meta(body: bytes, *, path="/api/webhooks/meta"):
    return Client().post(path, data=body, content_type="application/json")


# Addresses


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550123", "+14155550123"),
        ("whatsapp:+14155550123", "+14155550123"),
        ("14155550123", "+14155550123"),
        (" user-123 ", "user-123"),
        ("ABC.def_9", "ABC.def_9"),
    ],
)
def test_whatsapp_addresses_are_e164_numbers_or_opaque_ids_kept_as_given(raw, expected):
    assert normalise_whatsapp(raw, field="to") == expected


@pytest.mark.parametrize("raw", ["+1", "+999999", "whatsapp:user-1", "has space", "x" * 65, "", "émile"])
def test_invalid_whatsapp_addresses_are_refused(raw):
    with pytest.raises(InvalidAddress):
        normalise_whatsapp(raw, field="to")


@pytest.mark.parametrize("raw", ["+14155550123", "a/b", "x" * 65, ""])
def test_instagram_ids_are_opaque_ids_only(raw):
    with pytest.raises(InvalidAddress):
        normalise_scoped_id(raw, field="to")


# Sending through POST /api/messages


def test_a_whatsapp_send_answers_201_with_a_wamid_from_the_business_number(api, settings):
    response = send(api, channel="whatsapp", to="whatsapp:+14155550123", body="Merhaba!")

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["provider_message_id"].startswith("wamid.")
    assert (data["type"], data["provider"], data["status"]) == ("whatsapp", "meta", "sent")
    assert (data["from"], data["to"]) == (settings.WHATSAPP_PHONE_NUMBER, "+14155550123")
    assert response["X-RateLimit-Limit"] == "600"
    assert Conversation.objects.get().channel == "whatsapp"


def test_an_instagram_send_answers_201_with_an_m_id(api, settings):
    response = send(api, channel="instagram", to="user-123", body="Hi")

    assert response.status_code == 201, response.content
    assert response.json()["provider_message_id"].startswith("m_")
    assert response.json()["from"] == settings.INSTAGRAM_ACCOUNT_ID


def test_the_unified_endpoint_sends_sms_and_email_too_but_needs_from_for_them(api):
    assert send(api, channel="sms", to="+18045551234", body="x").json()["error"]["details"]["from"]
    sms = send(
        api,
        channel="sms",
        **{"from": "+12016661234"},
        to="+18045551234",
        body="x",
        attachments=["https://a.example/i.jpg"],
    )
    email = send(api, channel="email", **{"from": "a@usehatchapp.com"}, to="b@example.com", body="<p>x</p>")

    assert (sms.status_code, sms.json()["type"], sms.json()["provider"]) == (201, "mms", "twilio")
    assert (email.status_code, email.json()["provider"]) == (201, "sendgrid")


def test_a_repeat_with_the_same_key_and_body_is_the_same_message_and_another_body_is_422(api):
    first = send(api, channel="whatsapp", to="+14155550123", body="Hi", client_message_id="k-1")
    again = send(api, channel="whatsapp", to="+14155550123", body="Hi", client_message_id="k-1")
    other = send(api, channel="whatsapp", to="+14155550123", body="Changed", client_message_id="k-1")
    header = send(api, channel="instagram", to="u-1", body="Hi", headers={"Idempotency-Key": "k-2"})
    header_again = send(api, channel="instagram", to="u-1", body="Hi", headers={"Idempotency-Key": "k-2"})

    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert header_again.json()["id"] == header.json()["id"]
    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "telegram", "to": "u-1", "body": "x"}, "channel"),
        ({"channel": "whatsapp", "to": "+1", "body": "x"}, "to"),
        ({"channel": "instagram", "to": "+14155550123", "body": "x"}, "to"),
        ({"channel": "whatsapp", "to": "u-1", "body": "  "}, "body"),
        ({"channel": "instagram", "to": "u-1", "body": "x" * 1001}, "body"),
        ({"channel": "whatsapp", "to": "u-1", "body": "x", "type": "sms"}, "type"),
        ({"to": "u-1", "body": "x"}, "channel"),
    ],
)
def test_bad_sends_are_400_in_the_envelope_naming_the_field(api, body, field):
    response = api.post("/api/messages", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]
    assert not Message.objects.exists()


def test_a_refused_whatsapp_send_still_carries_the_rate_limit_headers(api):
    response = send(api, channel="whatsapp", to="+1", body="x")

    assert response.status_code == 400
    assert response["X-RateLimit-Remaining"] == "600"


def test_whatsapp_sends_are_rate_limited_per_sender(api, settings):
    settings.WHATSAPP_RATE_LIMIT = (2, 60)
    codes = [send(api, channel="whatsapp", to=f"u-{i}", body="x").status_code for i in range(3)]

    assert codes == [201, 201, 429]


# Seed 004's payload


def mock_event(event_id="evt_123", **overrides):
    return {
        "eventId": event_id,
        "channel": "whatsapp",
        "from": "user-123",
        "text": "Hello",
        "timestamp": "2025-01-01T10:00:00Z",
        **overrides,
    }


def test_a_seed_004_event_creates_the_thread_and_message_and_counts_it_unread(settings):
    response = post_meta(json.dumps(mock_event()).encode(), path="/api/webhooks/mock-meta")

    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    message = Message.objects.get()
    assert (message.channel, message.type, message.from_address, message.to_address, message.body) == (
        "whatsapp",
        "whatsapp",
        "user-123",
        settings.WHATSAPP_PHONE_NUMBER,
        "Hello",
    )
    assert message.timestamp.isoformat() == "2025-01-01T10:00:00+00:00"
    assert Conversation.objects.get().unread_count == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"eventId": None}, "eventId"),
        ({"channel": "sms"}, "channel"),
        ({"text": None}, "text"),
        ({"from": "+1"}, "from"),
    ],
)
def test_a_seed_004_event_missing_or_bad_fields_is_a_400(overrides, field):
    response = post_meta(json.dumps(mock_event(**overrides)).encode(), path="/api/webhooks/mock-meta")

    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert WebhookEvent.objects.get().outcome == "rejected"


def test_an_instagram_seed_004_event_threads_with_the_instagram_account(settings):
    post_meta(
        json.dumps(mock_event(channel="instagram", **{"from": "ig-user.1"})).encode(), path="/api/webhooks/mock-meta"
    )

    assert Conversation.objects.get().participants == sorted(["ig-user.1", settings.INSTAGRAM_ACCOUNT_ID])


# Meta's formats


def test_a_whatsapp_delivery_stores_each_message_and_status_on_its_own():
    delivery = whatsapp_delivery(
        messages=[
            whatsapp_text("wamid.A", body="first"),
            whatsapp_text("wamid.B", body="second"),
            whatsapp_text("wamid.A"),
        ],
        statuses=[whatsapp_status("wamid.UNKNOWN", "delivered")],
    )

    response = post_meta(delivery)

    assert response.status_code == 200
    summary = response.json()
    assert (summary["received"], summary["processed"], summary["duplicate"], summary["orphan"]) == (4, 2, 1, 1)
    assert sorted(Message.objects.values_list("body", flat=True)) == ["first", "second"]
    assert Message.objects.get(provider_message_id="wamid.A").from_address == "+14155550123"
    assert Conversation.objects.get().unread_count == 2


def test_a_bad_item_never_fails_the_rest_of_its_delivery():
    delivery = whatsapp_delivery(messages=[{"id": "wamid.bad", "type": "text"}, whatsapp_text("wamid.good")])

    response = post_meta(delivery)

    assert response.status_code == 200
    assert [event["status"] for event in response.json()["events"]] == ["rejected", "processed"]
    assert response.json()["events"][0]["event_id"] == "wamid.bad"
    assert Message.objects.get().provider_message_id == "wamid.good"


def test_a_delivery_that_is_not_a_meta_object_is_a_400():
    response = post_meta(json.dumps({"object": "page", "entry": []}).encode())

    assert response.status_code == 400
    event = WebhookEvent.objects.get()
    assert (event.kind, event.outcome) == ("delivery", "rejected")


def sent_whatsapp(api) -> Message:
    response = send(api, channel="whatsapp", to="+14155550123", body="Order shipped")
    return Message.objects.get(pk=response.json()["id"])


def test_statuses_only_move_forward_whatever_order_they_arrive_in(api):
    message = sent_whatsapp(api)
    wamid = message.provider_message_id

    post_meta(
        whatsapp_delivery(
            statuses=[
                whatsapp_status(wamid, "read"),
                whatsapp_status(wamid, "delivered"),
                whatsapp_status(wamid, "sent"),
            ]
        )
    )

    message.refresh_from_db()
    assert message.status == "read"


def test_a_failed_status_keeps_metas_error_code_and_title(api):
    message = sent_whatsapp(api)

    post_meta(whatsapp_delivery(statuses=[whatsapp_status(message.provider_message_id, "failed")]))

    message.refresh_from_db()
    assert (message.status, message.last_error) == ("failed", {"code": "131026", "message": "Message undeliverable"})


def test_an_instagram_read_marks_the_message_read(api):
    response = send(api, channel="instagram", to="user-1", body="Hi")
    mid = response.json()["provider_message_id"]

    post_meta(
        instagram_delivery({"sender": {"id": "user-1"}, "recipient": {"id": "1"}, "timestamp": 1, "read": {"mid": mid}})
    )

    assert Message.objects.get(pk=response.json()["id"]).status == "read"


def test_an_instagram_echo_of_our_own_message_is_recorded_without_a_new_message(api):
    response = send(api, channel="instagram", to="user-1", body="Hi")
    echo = instagram_message(response.json()["provider_message_id"])
    echo["message"]["is_echo"] = True

    post_meta(instagram_delivery(echo))

    assert Message.objects.count() == 1
    assert WebhookEvent.objects.get(event_type="echo").outcome == "processed"


def test_a_status_that_arrives_before_the_send_records_its_id_is_applied_when_it_does(api, settings):
    pending = send(api, channel="whatsapp", to="+14155550123", body="x", _forceError={"code": 503, "times": 1})
    assert pending.status_code == 202
    message = Message.objects.get(pk=pending.json()["id"])
    wamid = "wamid." + meta._token(str(message.provider_token), "whatsapp")

    early = post_meta(whatsapp_delivery(statuses=[whatsapp_status(wamid, "delivered")]))
    assert early.json()["orphan"] == 1
    outbox_deliver_now(message_ids=[message.pk])

    message.refresh_from_db()
    assert (message.provider_message_id, message.status) == (wamid, "delivered")
    assert WebhookEvent.objects.get(kind="status").outcome == "processed"


# Signatures and the handshake


def test_with_the_app_secret_set_meta_deliveries_must_be_signed(settings):
    settings.META_APP_SECRET = ["app-secret"]
    body = whatsapp_delivery(messages=[whatsapp_text("wamid.S")])

    unsigned = post_meta(body)
    signed = Client().post(
        "/api/webhooks/meta",
        data=body,
        content_type="application/json",
        headers={"X-Hub-Signature-256": meta.signature_for(body=body, secret="app-secret")},
    )

    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "invalid_signature"
    assert signed.status_code == 200
    assert Message.objects.count() == 1


def test_the_handshake_echoes_the_challenge_as_plain_text(settings):
    settings.META_VERIFY_TOKEN = "verify-me"

    response = Client().get(
        "/api/webhooks/meta", {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"1158201444"


@pytest.mark.parametrize("token", ["wrong", ""])
def test_a_handshake_with_another_token_is_403_in_the_envelope(settings, token):
    settings.META_VERIFY_TOKEN = "verify-me"

    response = Client().get(
        "/api/webhooks/meta", {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1"}
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "verification_failed"


def test_without_a_configured_verify_token_every_handshake_fails(settings):
    settings.META_VERIFY_TOKEN = None

    response = Client().get(
        "/api/webhooks/meta", {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    )

    assert response.status_code == 403


# The inbox


def test_conversations_filter_by_the_new_channels(api):
    send(api, channel="whatsapp", to="u-1", body="x")
    send(api, channel="instagram", to="u-2", body="x")

    for channel in ("whatsapp", "instagram"):
        data = api.get("/api/conversations", {"channel": channel}).json()["data"]
        assert [c["channel"] for c in data] == [channel]


def test_conversations_filter_by_a_user_id_participant(api):
    send(api, channel="instagram", to="ig.user-7", body="x")

    data = api.get("/api/conversations", {"participant": "ig.user-7"}).json()["data"]

    assert [c["channel"] for c in data] == ["instagram"]
    assert api.get("/api/conversations", {"participant": "not a user!"}).status_code == 400


@pytest.mark.parametrize(
    "bad",
    [
        {"sender": "igsid-1", "message": {"mid": "m_BAD1", "text": "x"}},
        {"sender": {"id": "igsid-1"}, "recipient": "x", "message": {"mid": "m_BAD2", "text": "x"}},
        {"sender": {"id": "igsid-1"}, "message": {"mid": "m_BAD3", "text": "x", "attachments": 5}},
        {"sender": ["a"], "message": {"mid": "m_BAD4", "text": "x"}},
    ],
)
def test_an_instagram_item_of_the_wrong_shape_is_rejected_alone_never_a_500(bad):
    good = instagram_message("m_GOOD", text="good")

    response = post_meta(instagram_delivery(good, bad))

    assert response.status_code == 200
    statuses = [event["status"] for event in response.json()["events"]]
    assert statuses[0] == "processed"
    assert statuses[1] in ("rejected", "processed")  # attachments of the wrong type are dropped, not fatal
    assert Message.objects.filter(provider_message_id="m_GOOD").exists()


def test_instagram_attachment_urls_other_than_http_are_dropped():
    message = instagram_message("m_ATT")
    message["message"]["attachments"] = [
        {"type": "image", "payload": {"url": "javascript:alert(1)"}},
        {"type": "image", "payload": {"url": "https://cdn.example.com/a.jpg"}},
    ]

    post_meta(instagram_delivery(message))

    assert Message.objects.get(provider_message_id="m_ATT").attachments == ["https://cdn.example.com/a.jpg"]


def test_an_instagram_reaction_is_recorded_on_its_message_without_a_change(api):
    response = send(api, channel="instagram", to="user-1", body="Hi")
    mid = response.json()["provider_message_id"]

    result = post_meta(
        instagram_delivery(
            {"sender": {"id": "user-1"}, "recipient": {"id": "1"}, "reaction": {"mid": mid, "reaction": "love"}}
        )
    )

    assert result.json()["processed"] == 1
    assert Message.objects.get(pk=response.json()["id"]).status == "sent"


def test_a_seed_004_timestamp_out_of_range_is_a_400():
    event = mock_event(timestamp="0001-01-01T00:00:00+14:00")

    response = post_meta(json.dumps(event).encode(), path="/api/webhooks/mock-meta")

    assert response.status_code == 400
    assert "timestamp" in response.json()["error"]["details"]


def test_whatsapp_statuses_dedupe_by_id_and_status_so_a_later_read_still_applies(api):
    message = sent_whatsapp(api)
    wamid = message.provider_message_id

    post_meta(whatsapp_delivery(statuses=[whatsapp_status(wamid, "delivered")]))
    later = post_meta(whatsapp_delivery(statuses=[whatsapp_status(wamid, "read")]))

    assert later.json()["processed"] == 1
    message.refresh_from_db()
    assert message.status == "read"


def test_forced_failures_do_not_open_the_circuit_breaker_for_other_sends(api, settings):
    for index in range(8):
        send(api, channel="instagram", to=f"boom-{index}", body="boom", _forceError={"code": 503})

    innocent = send(api, channel="whatsapp", to="+14155550112", body="innocent")

    assert innocent.status_code == 201, innocent.json()
