"""A repeated inbound message's ``duplicate`` record commits without waiting for its WAL flush
(DB_ASYNC_DUPLICATE_COMMIT); the message and the delivery that claimed its id always wait for it, and
the setting never reaches anyone else's writes. A trigger notes the ``synchronous_commit`` in force
as each event row's statement ends, which is the setting its commit runs under."""

import json

import pytest
from django.db import connection, transaction

from messaging.models import Message
from tests import payloads
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
    table = WebhookEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_event_writes (id serial PRIMARY KEY, outcome text, setting text)")
        cursor.execute(
            "CREATE FUNCTION test_note_event_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " INSERT INTO test_event_writes (outcome, setting)"
            " VALUES (NEW.outcome, current_setting('synchronous_commit')); RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER test_note_event_write AFTER INSERT ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION test_note_event_write()"
        )

    def seen() -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM test_event_writes RETURNING id, outcome, setting")
            return [(outcome, setting) for _, outcome, setting in sorted(cursor.fetchall())]

    try:
        yield seen
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER test_note_event_write ON {table}")
            cursor.execute("DROP FUNCTION test_note_event_write()")
            cursor.execute("DROP TABLE test_event_writes")


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def _deliver(client, body):
    return client.post("/api/webhooks/sms", data=json.dumps(body), content_type="application/json")


def test_a_new_message_commits_durably_and_its_repeat_asynchronously(client, commits):
    body = payloads.inbound_sms()

    first, repeat = _deliver(client, body), _deliver(client, body)

    assert first.json()["status"] == "processed"
    assert repeat.json()["status"] == "duplicate"
    assert repeat.json()["message_id"] == first.json()["message_id"] == Message.objects.get().pk
    assert commits() == [("processed", "on"), ("duplicate", "off")]
    assert _synchronous_commit() == "on"  # for that one transaction only, not the connection
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
        assert _synchronous_commit() == "on"  # the caller's other writes keep their durability

    assert commits() == [("duplicate", "on")]
    assert WebhookEvent.objects.filter(outcome="duplicate").count() == 1
