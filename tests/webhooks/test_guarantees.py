"""Guarantees whose key line a test must notice when it is deleted: orphan adoption under both
interleavings of a callback and the send's commit, the adoption guard, a failing event isolated in
its batch, replays of errored and rejected status events, and Twilio's less common statuses."""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
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


def _one_claimed_send_with_its_outcome():
    from messaging.outbox import outbox_claim
    from messaging.services import message_call_providers

    OutboxMessageFactory(provider="twilio")
    [claimed] = outbox_claim(limit=1)
    return claimed, message_call_providers(message=claimed)


@pytest.mark.parametrize(
    "in_transaction",
    [
        pytest.param(False, marks=pytest.mark.django_db(transaction=True), id="autocommit: sent with the outcome"),
        pytest.param(True, marks=pytest.mark.django_db, id="in a transaction: after the outcome"),
    ],
)
def test_a_status_event_that_came_before_a_sends_outcome_is_applied_when_it_is_recorded(in_transaction):
    from messaging.services import message_record_attempts

    message, outcome = _one_claimed_send_with_its_outcome()
    twilio_status(outcome.result.provider_message_id, "delivered")  # no message has the sid yet: an orphan
    assert WebhookEvent.objects.get(kind="status").outcome == "orphan"

    message_record_attempts(attempts=[(message, outcome)])

    message.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (message.status, event.outcome, event.message_id) == ("delivered", "processed", message.pk)


postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the orphan lock is PostgreSQL's")


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_an_inline_sends_orphan_lookup_is_part_of_its_outcome_statement(monkeypatch):
    """One statement records the outcome and answers whether orphans wait; the receiver, told none
    do, makes no lookup of its own."""
    from django.test.utils import CaptureQueriesContext

    from messaging.services import message_record_attempts

    looked_again = []
    monkeypatch.setattr(services, "_has_orphans", lambda **kwargs: looked_again.append(kwargs) or False)
    message, outcome = _one_claimed_send_with_its_outcome()

    with CaptureQueriesContext(connection) as queries:
        message_record_attempts(attempts=[(message, outcome)])

    assert [query["sql"].split()[0] for query in queries] == ["UPDATE"]
    assert "webhook_orphans_waiting(" in queries[0]["sql"]
    assert looked_again == []
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", outcome.result.provider_message_id)


def _waiting_for_an_advisory_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cursor.fetchone()[0] > 0


def _until(condition, seconds=10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_an_orphan_committing_while_the_outcome_is_recorded_is_seen_by_the_send():
    """The orphan's transaction holds the lock; the outcome's statement waits for it, then sees the
    orphan (a snapshot taken before the wait would not). Nothing else looks again here: only the
    send can apply it."""
    message, outcome = _one_claimed_send_with_its_outcome()
    sid = outcome.result.provider_message_id
    stored, release = threading.Event(), threading.Event()

    def orphan_committing_late():
        try:
            with transaction.atomic():
                WebhookEvent.objects.create(
                    provider="twilio",
                    kind="status",
                    event_id=f"{sid}:delivered",
                    event_type="delivered",
                    provider_message_id=sid,
                    outcome="orphan",
                    content_type="application/x-www-form-urlencoded",
                    body=urlencode({"MessageSid": sid, "MessageStatus": "delivered"}),
                )
                stored.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    orphan = threading.Thread(target=orphan_committing_late)
    orphan.start()
    assert stored.wait(timeout=10)
    recording = threading.Thread(target=_record_and_close, args=(message, outcome))
    recording.start()
    _until(_waiting_for_an_advisory_lock)  # the outcome's statement waits for the orphan's commit
    release.set()
    orphan.join(timeout=30)
    recording.join(timeout=30)

    message.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (message.status, event.outcome, event.message_id) == ("delivered", "processed", message.pk)


def _record_and_close(message, outcome, *, hold=None):
    from messaging.services import message_record_attempts

    try:
        if hold is None:
            message_record_attempts(attempts=[(message, outcome)])
            return
        entered, release = hold
        with transaction.atomic():  # the outcome's transaction, kept open: it holds the lock
            message_record_attempts(attempts=[(message, outcome)])
            entered.set()
            release.wait(timeout=30)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_a_callback_whose_orphan_meets_an_outcome_being_recorded_waits_and_then_finds_the_message():
    """The outcome's transaction holds the lock and has looked (no orphan then); the callback misses
    the message, and its orphan's write waits for the outcome's commit, so its look after its own
    commit finds the message."""
    message, outcome = _one_claimed_send_with_its_outcome()
    entered, release = threading.Event(), threading.Event()
    recording = threading.Thread(target=_record_and_close, args=(message, outcome), kwargs={"hold": (entered, release)})
    recording.start()
    assert entered.wait(timeout=10)
    answers = []

    def callback_then_close():
        try:
            answers.append(twilio_status(outcome.result.provider_message_id, "delivered"))
        finally:
            connection.close()

    callback = threading.Thread(target=callback_then_close)
    callback.start()
    _until(_waiting_for_an_advisory_lock)  # the orphan's write waits for the outcome's commit
    release.set()
    recording.join(timeout=30)
    callback.join(timeout=30)

    assert answers[0].json()["status"] == "processed"
    message.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (message.status, event.outcome, event.message_id) == ("delivered", "processed", message.pk)
