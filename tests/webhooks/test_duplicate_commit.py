"""A repeated inbound message's ``duplicate`` record commits without waiting for its WAL flush
(DB_ASYNC_DUPLICATE_COMMIT); the message and the delivery that claimed its id always wait for it, and
the setting never reaches anyone else's writes. A trigger notes the ``synchronous_commit`` in force
as each event row's statement ends, which is the setting its commit runs under."""

import json

import pytest
from django.db import connection, transaction
from django.test import Client

from messaging.models import Message
from tests import payloads
from tests.commit_settings import commit_settings_noted, synchronous_commit
from tests.in_flight import with_original_in_flight
from webhooks.models import WebhookEvent

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"),
    # Autocommit, as in production: each inbound statement is its own transaction.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def commits():
    """The (outcome written, synchronous_commit in force) of each event row stored since the last call,
    in order."""
    with commit_settings_noted(WebhookEvent._meta.db_table, "outcome") as seen:
        yield seen


def _deliver(client, body):
    return client.post("/api/webhooks/sms", data=json.dumps(body), content_type="application/json")


def test_a_new_message_commits_durably_and_its_repeat_asynchronously(client, commits):
    body = payloads.inbound_sms()

    first, repeat = _deliver(client, body), _deliver(client, body)

    assert first.json()["status"] == "processed"
    assert repeat.json()["status"] == "duplicate"
    assert repeat.json()["message_id"] == first.json()["message_id"] == Message.objects.get().pk
    assert commits() == [("processed", "on"), ("duplicate", "off")]
    assert synchronous_commit() == "on"  # for that one transaction only, not the connection
    _deliver(client, payloads.inbound_sms())
    assert commits() == [("processed", "on")]  # the next new message on the same connection


def test_with_the_setting_off_the_duplicate_waits_for_its_flush_too(client, commits, settings):
    settings.DB_ASYNC_DUPLICATE_COMMIT = False
    body = payloads.inbound_sms()

    _deliver(client, body), _deliver(client, body)

    assert commits() == [("processed", "on"), ("duplicate", "on")]


def test_a_duplicate_inside_a_callers_transaction_leaves_its_commit_alone(client, commits):
    body = payloads.inbound_sms()
    _deliver(client, body)
    commits()

    with transaction.atomic():  # a management command's or a test's transaction around the ingest
        assert _deliver(client, body).json()["status"] == "duplicate"
        assert synchronous_commit() == "on"  # the caller's other writes keep their durability

    assert commits() == [("duplicate", "on")]
    assert WebhookEvent.objects.filter(outcome="duplicate").count() == 1


def test_a_repeat_that_waited_for_its_original_in_flight_commits_asynchronously(commits):
    """The repeat's claim waits in ON CONFLICT for an original whose transaction is still open; once
    the original commits, the repeat answers ``duplicate`` and its record commits without its flush,
    while the original's message and claim were committed durably before the repeat could see them."""
    body = payloads.inbound_sms(messaging_provider_id="in-flight-commit")

    # The repeat in autocommit, as the web process runs it.
    original, repeat = with_original_in_flight(lambda: _deliver(Client(), body), lambda: _deliver(Client(), body))

    assert original.json()["status"] == "processed"
    assert repeat.json()["status"] == "duplicate"
    assert repeat.json()["message_id"] == Message.objects.get().pk
    # The original ran inside a caller's transaction: its setting is left alone (on).
    assert commits() == [("processed", "on"), ("duplicate", "off")]
