"""A batch's status events are taken together (a few statements for the lot) with the guarantees each
event has alone: stored once each, deduplicated, applied forward-only in order, orphans kept."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test import Client

from messaging.models import Message
from messaging.services import message_apply_statuses
from tests.factories import MessageFactory
from webhooks import services
from webhooks.models import WebhookEvent


def event(message_id: str, name: str, **extra) -> dict:
    return {"event": name, "sg_event_id": uuid.uuid4().hex, "sg_message_id": f"{message_id}.filter001.1.0", **extra}


def post(events: list[dict]):
    return Client().post("/api/webhooks/email/events", data=json.dumps(events), content_type="application/json")


def sent_email(message_id: str) -> Message:
    return MessageFactory(
        conversation__channel="email",
        type="email",
        direction="outbound",
        status="sent",
        provider="sendgrid",
        provider_message_id=message_id,
    )


@pytest.mark.django_db
def test_a_batch_of_the_documented_maximum_stores_and_applies_every_event():
    messages = [sent_email(f"{index:016x}") for index in range(50)]
    events = [event(m.provider_message_id, name) for m in messages for name in ("processed", "delivered", "open")]
    events += [event(uuid.uuid4().hex[:16], "delivered") for _ in range(5000 - len(events))]  # unknown: orphans

    response = post(events)

    assert response.status_code == 200
    summary = response.json()
    assert (summary["received"], summary["processed"], summary["orphan"]) == (5000, 150, 4850)
    assert [e["event_id"] for e in summary["events"]] == [e["sg_event_id"] for e in events]
    assert WebhookEvent.objects.count() == 5000
    assert set(Message.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db
def test_events_for_one_message_apply_in_their_batch_order_with_a_note_each():
    message = sent_email("00000000000000aa")
    events = [event("00000000000000aa", "delivered"), event("00000000000000aa", "bounce", reason="550 gone")]

    post(events)

    message.refresh_from_db()
    assert message.status == "delivered"
    notes = [WebhookEvent.objects.get(event_id=e["sg_event_id"]).note for e in events]
    assert notes == ["status -> delivered", "kept: already delivered"]


@pytest.mark.django_db
def test_a_repeat_inside_one_batch_and_across_batches_is_a_duplicate():
    message = sent_email("00000000000000bb")
    delivered = event("00000000000000bb", "delivered")

    first = post([delivered, delivered]).json()
    second = post([delivered]).json()

    assert [e["status"] for e in first["events"]] == ["processed", "duplicate"]
    assert [e["status"] for e in second["events"]] == ["duplicate"]
    assert {e["message_id"] for e in first["events"] + second["events"]} == {message.pk}


@pytest.mark.django_db
def test_a_failure_in_a_batch_keeps_each_messages_own_error():
    one, two = sent_email("00000000000000c1"), sent_email("00000000000000c2")

    post(
        [
            event("00000000000000c1", "bounce", reason="550 no such user"),
            event("00000000000000c2", "dropped", reason="Spam"),
        ]
    )

    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, one.last_error["message"]) == ("failed", "550 no such user")
    assert (two.status, two.last_error["message"]) == ("failed", "Spam")


@pytest.mark.django_db(transaction=True)
def test_an_event_a_concurrent_delivery_claims_mid_batch_is_a_duplicate_and_the_rest_still_apply(monkeypatch):
    one, two = sent_email("00000000000000d1"), sent_email("00000000000000d2")
    contested = event("00000000000000d1", "delivered")
    other = event("00000000000000d2", "delivered")
    original = services.message_apply_statuses

    def racing_delivery(**kwargs):
        # While this batch holds its transaction, the provider's retry of one event arrives alone.
        def deliver():
            try:
                assert post([contested]).json()["events"][0]["status"] == "processed"
            finally:
                connection.close()

        if not racing.is_set():
            racing.set()
            thread = threading.Thread(target=deliver)
            thread.start()
            thread.join(timeout=30)
        return original(**kwargs)

    racing = threading.Event()
    monkeypatch.setattr(services, "message_apply_statuses", racing_delivery)

    result = post([contested, other]).json()

    assert [e["status"] for e in result["events"]] == ["duplicate", "processed"]
    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, two.status) == ("delivered", "delivered")
    assert WebhookEvent.objects.filter(event_id=contested["sg_event_id"], outcome="processed").count() == 1


@pytest.mark.django_db
def test_a_message_id_with_like_wildcards_matches_only_itself():
    other = sent_email("abXd.filter001.1.0")  # stored with a tail the event does not carry
    mine = sent_email("ab_d.filter001.1.0")

    post([{"event": "delivered", "sg_event_id": "w-1", "sg_message_id": "ab_d.filter0002.99.0"}])

    other.refresh_from_db()
    mine.refresh_from_db()
    assert (mine.status, other.status) == ("delivered", "sent")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row lock modes are PostgreSQL's")
def test_a_batch_applying_statuses_leaves_storing_an_event_that_names_its_message_free():
    """A batch's status pass locks its messages; another batch storing an event that names one of them
    (an `open`, which changes nothing) must not wait for it: with one message each held the other way
    round, the two waited for each other until PostgreSQL aborted one as a deadlock."""
    message = sent_email("0" * 16)
    holding, release = threading.Event(), threading.Event()

    def apply_and_hold():
        try:
            with transaction.atomic():
                message_apply_statuses(changes=[(message.pk, "delivered", None)])
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=apply_and_hold)
    thread.start()
    try:
        assert holding.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            WebhookEvent.objects.create(
                provider="sendgrid", kind="status", event_id="evt-open", outcome="processed", message=message, body="{}"
            )
    finally:
        release.set()
        thread.join(10)
    message.refresh_from_db()
    assert message.status == "delivered"
