"""The inbound pipeline's round trips on PostgreSQL: a new message is one statement (claim, conversation
upsert with its counters, message), and so is a duplicate of a committed original (decided by its claim,
before any conversation work), once the connection knows the name of the messages' id sequence. A
duplicate of an original committed while it waited: tests/test_concurrency.py."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation
from messaging.models import Message
from tests import payloads
from webhooks.models import CLAIMING_OUTCOMES, WebhookEvent
from webhooks.services import _forget_message_sequence, _message_sequence

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sequence_known():
    """The connection has looked up the messages' id sequence, as after its first inbound message
    (test_the_sequence_is_looked_up_once_per_connection), and forgets it afterwards."""
    with connection.cursor() as cursor:
        _message_sequence(cursor)
    yield
    _forget_message_sequence()


def deliver(client, body):
    return client.post("/api/webhooks/sms", data=body, content_type="application/json")


def statements(queries):
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_a_new_inbound_message_is_stored_in_one_statement(client):
    with CaptureQueriesContext(connection) as queries:
        response = deliver(client, payloads.inbound_sms(messaging_provider_id="one-trip"))

    assert response.status_code == 200
    assert len(statements(queries)) == 1
    message = Message.objects.get()
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.message_id, event.event_id) == ("processed", message.pk, "one-trip")
    assert event.processed_at is not None
    conversation = Conversation.objects.get()
    assert message.conversation_id == conversation.pk
    assert (conversation.message_count, conversation.unread_count) == (1, 1)
    assert conversation.last_message_preview == "This is an incoming SMS message"
    assert conversation.last_message_direction == "inbound"


def test_a_duplicate_is_decided_by_its_claim_and_touches_no_conversation(client):
    deliver(client, payloads.inbound_sms(messaging_provider_id="twice"))
    before = Conversation.objects.values().get()

    with CaptureQueriesContext(connection) as queries:
        response = deliver(client, payloads.inbound_sms(messaging_provider_id="twice"))

    assert response.status_code == 200
    assert len(statements(queries)) == 1
    assert Conversation.objects.values().get() == before, "no counter, preview or timestamp changed"
    original = WebhookEvent.objects.get(outcome="processed")
    duplicate = WebhookEvent.objects.get(outcome="duplicate")
    assert response.json() == {"status": "duplicate", "event_id": "twice", "message_id": Message.objects.get().pk}
    assert duplicate.message_id == Message.objects.get().pk
    assert duplicate.note == "already received"
    # The duplicate row is the delivery as received, like the original's: only outcome and note differ.
    kept = ("provider", "kind", "event_id", "event_type", "headers", "content_type", "body", "body_exact", "error")
    assert [getattr(duplicate, name) for name in kept] == [getattr(original, name) for name in kept]
    assert duplicate.processed_at is not None
    assert duplicate.pk > original.pk


def test_a_duplicate_whose_original_message_was_deleted_is_still_stored(client):
    deliver(client, payloads.inbound_sms(messaging_provider_id="gone"))
    Message.objects.all().delete()  # the claim's message_id becomes NULL (SET_NULL)

    with CaptureQueriesContext(connection) as queries:
        response = deliver(client, payloads.inbound_sms(messaging_provider_id="gone"))

    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert len(statements(queries)) == 2, "the claim names no message: the provider id is looked up"
    assert WebhookEvent.objects.get(outcome="duplicate").message_id is None
    assert Message.objects.count() == 0


def test_the_claiming_outcomes_are_the_ones_the_database_function_reads():
    # migration webhooks 0005 writes them out in webhook_claiming_message()
    assert sorted(CLAIMING_OUTCOMES) == ["orphan", "processed"]


def test_the_upsert_keeps_the_newest_preview_and_reopens_the_thread(client):
    deliver(client, payloads.inbound_sms(body="newer", timestamp="2024-11-02T10:00:00Z"))
    Conversation.objects.update(status="closed", archived_at=timezone.now())

    deliver(client, payloads.inbound_sms(body="older", timestamp="2024-11-01T10:00:00Z"))

    conversation = Conversation.objects.get()
    assert (conversation.message_count, conversation.unread_count) == (2, 2)
    assert conversation.last_message_preview == "newer"
    assert conversation.last_message_at.isoformat() == "2024-11-02T10:00:00+00:00"
    assert (conversation.status, conversation.archived_at) == ("open", None)


def test_a_message_stored_without_its_claiming_event_is_answered_as_a_duplicate(client):
    deliver(client, payloads.inbound_sms(messaging_provider_id="pruned"))
    WebhookEvent.objects.all().delete()  # as after prune_webhook_events

    response = deliver(client, payloads.inbound_sms(messaging_provider_id="pruned"))

    assert response.status_code == 200
    assert Message.objects.count() == 1
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.message_id) == ("duplicate", Message.objects.get().pk)
    assert Conversation.objects.get().message_count == 1


def test_the_sequence_is_looked_up_once_per_connection(client):
    _forget_message_sequence()
    with CaptureQueriesContext(connection) as first:
        assert deliver(client, payloads.inbound_sms(messaging_provider_id="first")).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert deliver(client, payloads.inbound_sms(messaging_provider_id="second")).status_code == 200

    assert len(statements(first)) == 2
    assert "pg_get_serial_sequence" in statements(first)[0]
    assert len(statements(second)) == 1
    assert Message.objects.count() == 2


def test_a_sequence_renamed_after_it_was_looked_up_loses_no_message(client):
    deliver(client, payloads.inbound_sms(messaging_provider_id="before"))
    with connection.cursor() as cursor:
        sequence = _message_sequence(cursor)  # the name the connection looked up
        cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO renamed_message_sequence")

    # The statement names the old sequence: it fails, the general path stores the message, and the
    # connection looks the sequence up again for the next one.
    assert deliver(client, payloads.inbound_sms(messaging_provider_id="during")).json()["status"] == "processed"
    with CaptureQueriesContext(connection) as after:
        assert deliver(client, payloads.inbound_sms(messaging_provider_id="after")).json()["status"] == "processed"

    lookup, statement = statements(after)  # looked up again, then one statement under the new name
    assert "pg_get_serial_sequence" in lookup
    assert "renamed_message_sequence" in statement
    assert sorted(Message.objects.values_list("provider_message_id", flat=True)) == ["after", "before", "during"]
    assert WebhookEvent.objects.filter(outcome="processed").count() == 3
