"""A send's recorded outcome commits without waiting for its WAL flush (DB_ASYNC_OUTCOME_COMMIT); the
message stored before the provider call always waits for it, and the setting never reaches anyone
else's writes. A trigger notes the ``synchronous_commit`` each write to a message ran under."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import Message
from messaging.outbox import OutboxWorker
from messaging.services import AttemptOutcome, message_record_attempts
from providers.base import SendResult
from providers.twilio import TwilioProvider as MockTwilioProvider
from tests import payloads
from tests.factories import OutboxMessageFactory

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"),
    # Autocommit, as in production: each outcome UPDATE is its own transaction.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def commits():
    """The (status written, synchronous_commit in force) of every write to a message, in order."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_message_writes (id serial PRIMARY KEY, status text, setting text)")
        cursor.execute(
            "CREATE FUNCTION test_note_message_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " INSERT INTO test_message_writes (status, setting)"
            " VALUES (NEW.status, current_setting('synchronous_commit')); RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_note_message_write AFTER INSERT OR UPDATE ON messaging_message"
            " FOR EACH ROW EXECUTE FUNCTION test_note_message_write()"
        )

    def seen() -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, setting FROM test_message_writes ORDER BY id")
            return [tuple(row) for row in cursor.fetchall()]

    try:
        yield seen
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_note_message_write ON messaging_message")
            cursor.execute("DROP FUNCTION test_note_message_write()")
            cursor.execute("DROP TABLE test_message_writes")


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_an_inline_send_stores_its_message_durably_and_its_outcome_asynchronously(api, commits):
    response = api.post("/api/messages/sms", payloads.sms(), format="json")

    assert response.status_code == 201, response.content
    assert commits() == [("pending", "on"), ("sent", "off")]
    assert _synchronous_commit() == "on"  # for that one transaction only, not the connection


def test_with_the_setting_off_the_outcome_waits_for_its_flush_too(api, commits, settings):
    settings.DB_ASYNC_OUTCOME_COMMIT = False

    response = api.post("/api/messages/sms", payloads.sms(), format="json")

    assert response.status_code == 201, response.content
    assert commits() == [("pending", "on"), ("sent", "on")]


def test_the_outbox_records_a_batch_of_outcomes_asynchronously(commits):
    OutboxMessageFactory.create_batch(3)

    OutboxWorker(concurrency=3, once=True, poll_interval=0.05).run()

    assert Message.objects.filter(status="sent").count() == 3
    assert sorted(setting for status, setting in commits() if status == "sent") == ["off", "off", "off"]


def test_inside_a_callers_transaction_the_outcome_commits_with_it_as_configured(commits):
    message = OutboxMessageFactory()
    commits()  # the factory's insert
    result = SendResult(provider="twilio", provider_message_id="SM" + "1" * 32, status="queued")

    with transaction.atomic():
        message_record_attempts(attempts=[(message, AttemptOutcome(result=result, accepted_by="twilio"))])
        assert _synchronous_commit() == "on"  # the caller's other writes keep their durability

    assert commits()[-1] == ("sent", "on")
    assert Message.objects.get(pk=message.pk).status == "sent"


def test_an_outcome_lost_in_a_database_crash_is_recorded_again_without_a_second_send(api):
    """What a crash in the moment after the outcome's commit leaves: the message as it was stored,
    pending under its inline lease. The outbox sends it again with the same token, and the provider
    answers with the original send."""
    answered = api.post("/api/messages/sms", payloads.sms(), format="json").json()
    assert answered["status"] == "sent"
    expired = timezone.now() - timedelta(seconds=1)
    Message.objects.filter(pk=answered["id"]).update(  # the row as stored, its lease since run out
        status="pending",
        provider_message_id=None,
        metadata={},
        first_outcome="",
        next_attempt_at=expired,
        leased_until=expired,
    )

    OutboxWorker(concurrency=1, once=True, poll_interval=0.05).run()

    message = Message.objects.get(pk=answered["id"])
    assert message.status == "sent"
    assert message.provider_message_id == answered["provider_message_id"]
    assert MockTwilioProvider().counts() == {"sends": 1, "replays": 1}
