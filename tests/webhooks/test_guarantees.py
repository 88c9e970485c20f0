"""Guarantees whose key line a test must notice when it is deleted: orphan adoption under both
interleavings of a callback and the send's commit, the adoption guard, a failing event isolated in
its batch, replays of errored and rejected status events, and Twilio's less common statuses."""

from __future__ import annotations

import json
import threading
import uuid
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from messaging.models import Message
from messaging.services import message_attempt_delivery
from providers.base import StatusEvent
from tests.factories import MessageFactory, OutboxMessageFactory
from webhooks import services
from webhooks.models import WebhookEvent


def twilio_status(sid: str, status: str, **extra):
    body = urlencode({"MessageSid": sid, "MessageStatus": status, **extra})
    return Client().post("/api/webhooks/sms/status", data=body, content_type="application/x-www-form-urlencoded")


def sent_sms(**fields) -> Message:
    return MessageFactory(**{"direction": "outbound", "status": "sent", "provider": "twilio", **fields})


@pytest.mark.django_db(transaction=True)
def test_a_callback_whose_first_look_misses_a_send_committing_meanwhile_is_applied_by_its_look_again(monkeypatch):
    """The callback looks for the message, misses; the send commits its sid and finds no orphan (the
    callback has not committed); the callback commits and looks again: only that look applies it."""
    pending = OutboxMessageFactory(attempts=1)
    sid = "SM" + uuid.uuid4().hex
    original = services.message_find_outbound
    calls = []

    def first_look_then_the_send_commits(**kwargs):
        found = original(**kwargs)
        calls.append(found)
        if len(calls) == 1:

            def send_commits():
                try:
                    Message.objects.filter(pk=pending.pk).update(provider_message_id=sid, status="sent")
                    assert (
                        services.webhook_apply_orphans(
                            provider="twilio", provider_message_id=sid, message_id=pending.pk
                        )
                        == 0
                    )
                finally:
                    connection.close()

            thread = threading.Thread(target=send_commits)
            thread.start()
            thread.join(timeout=30)
        return found

    monkeypatch.setattr(services, "message_find_outbound", first_look_then_the_send_commits)

    response = twilio_status(sid, "delivered")

    # Stored as an orphan, then applied by the look after its commit: the answer says so.
    assert response.json()["status"] == "processed"
    assert calls[0] is None
    assert calls[-1] is not None
    pending.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (pending.status, event.outcome, event.message_id) == ("delivered", "processed", pending.pk)


@pytest.mark.django_db
def test_an_orphan_committed_before_the_send_is_applied_by_the_send():
    pending = OutboxMessageFactory(attempts=1, provider="twilio")
    twilio_status("SM" + "0" * 32, "delivered")  # not this message's sid: a real orphan stays

    message_attempt_delivery(message=pending)  # the mock answers with a sid derived from the token
    pending.refresh_from_db()
    assert pending.status == "sent"
    twilio_status(pending.provider_message_id, "delivered")

    pending.refresh_from_db()
    assert pending.status == "delivered"


@pytest.mark.django_db
def test_an_orphan_is_adopted_once_even_when_both_sides_find_it():
    message = sent_sms()
    status = StatusEvent(
        provider="twilio",
        event_id=f"{message.provider_message_id}:delivered",
        provider_message_id=message.provider_message_id,
        event_type="delivered",
        meaning="delivered",
    )
    orphan = WebhookEvent.objects.create(
        provider="twilio", kind="status", event_id=status.event_id, outcome="orphan", body="{}"
    )

    first = services._adopt_orphan(orphan, message, status)
    second = services._adopt_orphan(orphan, message, status)

    assert (first, second) == (True, False)
    orphan.refresh_from_db()
    assert orphan.note == "status -> delivered (arrived before the message)"


@pytest.mark.django_db
def test_one_event_failing_in_processing_fails_alone_in_its_batch(monkeypatch):
    good, bad = (
        sent_sms(provider="sendgrid", provider_message_id="a" * 16),
        sent_sms(provider="sendgrid", provider_message_id="b" * 16),
    )
    original = services.message_apply_status

    def broken_for_bad(*, message_id, **kwargs):
        if message_id == bad.pk:
            raise RuntimeError("a bug that only this event meets")
        return original(message_id=message_id, **kwargs)

    monkeypatch.setattr(services, "message_apply_status", broken_for_bad)
    monkeypatch.setattr(services, "message_apply_statuses", lambda **kwargs: 1 / 0)  # the batch path fails too
    events = [
        {"event": "delivered", "sg_event_id": "e-good", "sg_message_id": good.provider_message_id},
        {"event": "delivered", "sg_event_id": "e-bad", "sg_message_id": bad.provider_message_id},
    ]

    response = Client().post("/api/webhooks/email/events", data=json.dumps(events), content_type="application/json")

    assert response.status_code == 200
    assert [e["status"] for e in response.json()["events"]] == ["processed", "error"]
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, bad.status) == ("delivered", "sent")
    assert WebhookEvent.objects.get(event_id="e-bad").outcome == "error"

    monkeypatch.undo()
    call_command("replay_webhooks", "--outcome", "error", stdout=open("/dev/null", "w"))  # noqa: SIM115
    bad.refresh_from_db()
    assert bad.status == "delivered"
    assert WebhookEvent.objects.get(event_id="e-bad").outcome == "processed"


@pytest.mark.django_db
def test_a_rejected_status_event_is_replayed_once_it_reads_and_never_twice():
    message = sent_sms()
    event = WebhookEvent.objects.create(
        provider="twilio",
        kind="status",
        outcome="rejected",
        rejection_code="validation_error",
        content_type="application/x-www-form-urlencoded",
        body=urlencode({"MessageSid": message.provider_message_id, "MessageStatus": "delivered"}),
    )

    call_command("replay_webhooks", str(event.pk), stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("replay_webhooks", str(event.pk), stdout=open("/dev/null", "w"))  # noqa: SIM115

    event.refresh_from_db()
    message.refresh_from_db()
    assert (event.outcome, message.status) == ("processed", "delivered")
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("twilio", "ours"),
    [
        ("accepted", "sent"),
        ("scheduled", "sent"),
        ("partially_delivered", "delivered"),
        ("read", "read"),
        ("canceled", "failed"),
    ],
)
def test_twilios_less_common_statuses_map_as_documented(twilio, ours):
    message = sent_sms(status="pending", next_attempt_at="2030-01-01T00:00:00Z")

    twilio_status(message.provider_message_id, twilio)

    message.refresh_from_db()
    assert message.status == ours


@pytest.mark.django_db
def test_a_status_whose_sid_equals_an_inbound_messages_id_touches_only_the_outbound_message():
    inbound = MessageFactory(direction="inbound", status="received", provider="twilio", provider_message_id="SHARED-ID")
    outbound = sent_sms(provider_message_id="SHARED-ID")

    twilio_status("SHARED-ID", "delivered")

    inbound.refresh_from_db()
    outbound.refresh_from_db()
    assert (inbound.status, outbound.status) == ("received", "delivered")
