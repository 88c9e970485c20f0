import json
from urllib.parse import urlencode

import pytest
from django.core.management import CommandError, call_command

from messaging.models import Message
from tests import payloads
from tests.factories import MessageFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def replay(*args):
    from io import StringIO

    out = StringIO()
    call_command("replay_webhooks", *args, stdout=out)
    return out.getvalue()


def twilio_status(client, sid, status):
    body = urlencode(payloads.twilio_status(sid, status))
    return client.post("/api/webhooks/sms/status", data=body, content_type="application/x-www-form-urlencoded")


def test_an_orphan_is_applied_by_a_replay_once_its_message_exists_and_a_second_replay_changes_nothing(client):
    sid = "SM" + "b" * 32
    twilio_status(client, sid, "delivered")
    # The message arrived by a path that did not announce its id (say, an import).
    message = MessageFactory(direction="outbound", status="sent", provider_message_id=sid)

    first = replay("--outcome", "orphan")

    assert "orphan -> processed (status -> delivered (arrived before the message))" in first
    assert "1 changed" in first
    message.refresh_from_db()
    assert message.status == "delivered"
    event = WebhookEvent.objects.get()
    assert event.replayed_at is not None
    snapshot = list(WebhookEvent.objects.values())

    second = replay("--outcome", "orphan")
    third = replay(str(event.pk))

    assert "Replayed 0 event(s)" in second
    assert "processed, unchanged (already processed; nothing to do)" in third
    assert list(WebhookEvent.objects.values()) == snapshot


def test_an_orphan_whose_message_is_still_unknown_stays_an_orphan(client):
    twilio_status(client, "SM" + "c" * 32, "sent")

    output = replay()

    assert "orphan, unchanged (message still not known)" in output
    assert WebhookEvent.objects.get().outcome == "orphan"


def test_an_event_whose_processing_failed_is_processed_by_a_replay(client, monkeypatch):
    import webhooks.services

    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    with monkeypatch.context() as patched:
        patched.setattr(webhooks.services, "message_receive", broken)
        patched.setattr(webhooks.services, "message_receive_sql", broken)
        client.raise_request_exception = False
        response = client.post("/api/webhooks/sms", data=payloads.inbound_sms(), content_type="application/json")
    assert response.status_code == 500
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.error) == ("error", "RuntimeError: database hiccup")

    output = replay("--kind", "inbound")

    assert "error -> processed" in output
    event.refresh_from_db()
    assert (event.outcome, event.error) == ("processed", "")
    assert event.message == Message.objects.get()
    assert "0 changed" in replay("--kind", "inbound", "--outcome", "error", "--outcome", "processed")
    assert Message.objects.count() == 1


def test_replaying_an_event_whose_message_another_delivery_created_marks_it_duplicate(client, monkeypatch):
    import webhooks.services

    with monkeypatch.context() as patched:
        patched.setattr(webhooks.services, "message_receive", lambda **kwargs: 1 / 0)
        patched.setattr(webhooks.services, "message_receive_sql", lambda **kwargs: 1 / 0)
        client.raise_request_exception = False
        client.post(
            "/api/webhooks/sms", data=payloads.inbound_sms(messaging_provider_id="m-9"), content_type="application/json"
        )
    client.post(
        "/api/webhooks/sms", data=payloads.inbound_sms(messaging_provider_id="m-9"), content_type="application/json"
    )

    output = replay()

    assert "error -> duplicate" in output
    assert Message.objects.count() == 1


def test_a_rejected_event_stays_rejected(client):
    client.post("/api/webhooks/sms", data={"from": "nobody"}, content_type="application/json")

    output = replay()

    assert "rejected, unchanged (still invalid:" in output


def test_a_dry_run_changes_nothing(client):
    twilio_status(client, "SM" + "d" * 32, "delivered")
    MessageFactory(direction="outbound", status="sent", provider_message_id="SM" + "d" * 32)

    output = replay("--dry-run")

    assert "would replay" in output
    assert WebhookEvent.objects.get().outcome == "orphan"


def test_filters_select_by_provider_and_time(client):
    twilio_status(client, "SM" + "e" * 32, "delivered")

    assert "Replayed 0" in replay("--provider", "sendgrid")
    assert "Replayed 0" in replay("--since", "2999-01-01")
    assert "Replayed 1" in replay("--until", "2999-01-01T00:00:00Z")


def test_unknown_ids_and_bad_dates_are_clear_errors():
    with pytest.raises(CommandError, match="No webhook event with id 999"):
        replay("999")
    with pytest.raises(CommandError, match="not an ISO-8601"):
        replay("--since", "yesterday")


def test_a_body_that_was_not_stored_exactly_is_never_replayed(client):
    body = (
        json.dumps(payloads.inbound_sms()).replace("incoming", "caf\\u00e9").encode().replace(b"caf\\u00e9", b"caf\xe9")
    )

    response = client.post("/api/webhooks/sms", data=body, content_type="application/json")

    assert response.status_code == 400
    event = WebhookEvent.objects.get()
    assert event.body_exact is False
    assert "stored body is not exact; never replayed" in replay()
    assert Message.objects.count() == 0
