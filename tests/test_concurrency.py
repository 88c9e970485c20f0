"""Races between real threads, each with its own database connection, on a committed database."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client

from conversations.models import Conversation
from messaging.models import Message
from messaging.services import _outbound_for, message_attempt_delivery
from providers.twilio import TwilioProvider as MockTwilioProvider
from tests import payloads
from tests.factories import MessageFactory, OutboxMessageFactory
from tests.in_flight import with_original_in_flight
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


def race(count, request):
    """Runs ``request(client, index)`` in ``count`` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def run(index):
        try:
            barrier.wait(timeout=10)
            return request(Client(), index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def post_json(client, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def test_twenty_simultaneous_deliveries_of_one_inbound_make_one_message():
    body = payloads.inbound_sms(messaging_provider_id="race-1")

    responses = race(20, lambda client, _: post_json(client, "/api/webhooks/sms", body))

    assert [r.status_code for r in responses] == [200] * 20
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["duplicate"] * 19 + ["processed"]
    assert len({r.json()["message_id"] for r in responses}) == 1
    assert Message.objects.count() == 1
    conversation = Conversation.objects.get()
    assert conversation.unread_count == 1
    assert conversation.message_count == 1
    assert WebhookEvent.objects.filter(outcome="processed").count() == 1
    assert WebhookEvent.objects.filter(outcome="duplicate").count() == 19


def test_a_duplicate_whose_original_commits_while_it_waits_names_the_original():
    """The duplicate's claim waits for the original's transaction; the original commits after the
    duplicate's statement began, so that statement's snapshot cannot see it: the claiming message is
    read with a snapshot of its own (webhook_claiming_message()), still in the one statement."""
    from django.test.utils import CaptureQueriesContext

    body = payloads.inbound_sms(messaging_provider_id="in-flight")

    def duplicate():
        with CaptureQueriesContext(connection) as queries:
            answer = post_json(Client(), "/api/webhooks/sms", body)
        return answer, [q["sql"] for q in queries.captured_queries if "webhookevent" in q["sql"]]

    original, (duplicate_answer, statements) = with_original_in_flight(
        lambda: post_json(Client(), "/api/webhooks/sms", body), duplicate
    )

    message = Message.objects.get()
    assert original.json()["status"] == "processed"
    assert duplicate_answer.json() == {"status": "duplicate", "event_id": "in-flight", "message_id": message.pk}
    assert len(statements) == 1
    duplicate_event = WebhookEvent.objects.get(outcome="duplicate")
    assert (duplicate_event.message_id, duplicate_event.note) == (message.pk, "already received")
    assert Conversation.objects.get().message_count == 1


def test_sixteen_simultaneous_first_messages_of_a_new_pair_make_one_conversation():
    formats = ["+12015550123", "+1 (201) 555-0123", "2015550123", "+1-201-555-0123"]

    def send(client, index):
        sender, recipient = formats[index % 4], "+18045559876"
        if index % 2:  # half of them reply the other way round
            sender, recipient = recipient, sender
        return post_json(client, "/api/messages/sms", payloads.sms(**{"from": sender, "to": recipient}))

    responses = race(16, send)

    assert [r.status_code for r in responses] == [201] * 16
    assert Conversation.objects.count() == 1
    conversation = Conversation.objects.get()
    assert conversation.message_count == 16
    assert {r.json()["conversation_id"] for r in responses} == {conversation.pk}


def test_summary_counts_stay_exact_under_concurrent_inbound_and_outbound_writes():
    def write(client, index):
        if index % 2:
            return post_json(client, "/api/webhooks/sms", payloads.inbound_sms(messaging_provider_id=f"mix-{index}"))
        return post_json(client, "/api/messages/sms", payloads.sms(body=f"out {index}"))

    responses = race(20, write)

    assert all(r.status_code in (200, 201) for r in responses)
    conversation = Conversation.objects.get()
    assert conversation.message_count == 20 == Message.objects.count()
    assert conversation.unread_count == 10


def test_simultaneous_sends_with_one_idempotency_key_send_once():
    body = payloads.sms(client_message_id="once-only")

    responses = race(10, lambda client, _: post_json(client, "/api/messages/sms", body))

    assert all(r.status_code == 201 for r in responses)
    assert len({r.json()["id"] for r in responses}) == 1
    assert Message.objects.count() == 1


def post_form(client, path, fields):
    return client.post(path, data=urlencode(fields), content_type="application/x-www-form-urlencoded")


def test_twenty_simultaneous_deliveries_of_one_status_callback_apply_it_once():
    message = MessageFactory(direction="outbound", status="sent", provider_message_id="SM" + "7" * 32)
    fields = payloads.twilio_status(message.provider_message_id, "delivered")

    responses = race(20, lambda client, _: post_form(client, "/api/webhooks/sms/status", fields))

    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["status"] for r in responses) == ["duplicate"] * 19 + ["processed"]
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize("round_", range(24))
def test_a_callback_racing_the_sends_commit_is_applied_exactly_once(round_):
    """The callback and the recording of the sid run at the same instant; whichever commits second
    must find the other, every time."""
    message = OutboxMessageFactory()
    sid = MockTwilioProvider().accept(_outbound_for(message)).provider_message_id
    fields = payloads.twilio_status(sid, "delivered")

    def act(client, index):
        if index == 0:
            return message_attempt_delivery(message=Message.objects.get(pk=message.pk))
        return post_form(client, "/api/webhooks/sms/status", fields)

    race(2, act)

    message.refresh_from_db()
    assert message.status == "delivered"
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.message_id) == ("processed", message.pk)


def test_twenty_simultaneous_deliveries_of_one_seed_004_event_make_one_message_counted_unread_once():
    body = {
        "eventId": "evt-race",
        "channel": "whatsapp",
        "from": "user-123",
        "text": "Hello",
        "timestamp": "2025-01-01T10:00:00Z",
    }

    responses = race(20, lambda client, _: post_json(client, "/api/webhooks/mock-meta", body))

    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["status"] for r in responses) == ["duplicate"] * 19 + ["processed"]
    assert Message.objects.count() == 1
    conversation = Conversation.objects.get()
    assert (conversation.unread_count, conversation.message_count) == (1, 1)
