"""A send's recorded outcome commits without waiting for its WAL flush (DB_ASYNC_OUTCOME_COMMIT); the
message stored before the provider call always waits for it, and the setting never reaches anyone
else's writes. A trigger notes the ``synchronous_commit`` each write to a message ran under."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import Message
from messaging.outbox import OutboxWorker
from messaging.services import UNCONFIRMED_PROVIDER, AttemptOutcome, message_record_attempts
from providers.base import SendResult
from providers.twilio import TwilioProvider
from tests import payloads
from tests.commit_settings import commit_settings_noted, synchronous_commit
from tests.factories import OutboxMessageFactory

BACKUP = "tests.providers.http.backup.BackupTwilio"  # a second Twilio account

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"),
    # Autocommit, as in production: each outcome UPDATE is its own transaction.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def commits():
    """The (status written, synchronous_commit in force) of each write to a message since the last
    call, in order."""
    with commit_settings_noted(Message._meta.db_table, "status", on="INSERT OR UPDATE") as seen:
        yield seen


def test_an_inline_send_stores_its_message_durably_and_its_outcome_asynchronously(api, commits):
    response = api.post("/api/messages/sms", payloads.sms(), format="json")

    assert response.status_code == 201, response.content
    assert commits() == [("pending", "on"), ("sent", "off")]
    assert synchronous_commit() == "on"  # for that one transaction only, not the connection


def test_with_the_setting_off_the_outcome_waits_for_its_flush_too(api, commits, settings):
    settings.DB_ASYNC_OUTCOME_COMMIT = False

    response = api.post("/api/messages/sms", payloads.sms(), format="json")

    assert response.status_code == 201, response.content
    assert commits() == [("pending", "on"), ("sent", "on")]


def _held(**fields):
    """Outbox messages as a claim hands them to an attempt: counted and leased."""
    fields = {"attempts": 1, "leased_until": timezone.now() + timedelta(seconds=60), **fields}
    return OutboxMessageFactory(**fields)


def _accepted(message):
    result = SendResult(provider="twilio", provider_message_id=f"SM{message.pk:032d}", status="queued")
    return (message, AttemptOutcome(result=result, accepted_by="twilio"))


def test_a_batch_of_outcomes_is_one_asynchronous_update(commits):
    messages = [_held() for _ in range(3)]
    commits()  # the factory's inserts, left out

    message_record_attempts(attempts=[_accepted(message) for message in messages])

    assert commits() == [("sent", "off")] * 3
    assert Message.objects.filter(status="sent").count() == 3


def test_the_outbox_worker_records_its_outcomes_asynchronously(commits):
    OutboxMessageFactory.create_batch(3)

    OutboxWorker(concurrency=3, once=True, poll_interval=0.05).run()

    assert Message.objects.filter(status="sent").count() == 3
    assert sorted(setting for status, setting in commits() if status == "sent") == ["off", "off", "off"]


class NotReplayingTwilio(TwilioProvider):
    """A provider that may send a repeated token again (as every real API is taken to)."""

    @property
    def replays_by_token(self) -> bool:
        return False


@pytest.mark.parametrize(
    "providers",
    [
        pytest.param([f"{__name__}.NotReplayingTwilio"], id="a-provider-that-does-not-replay-by-token"),
        # The retry could reach the backup, which would send it again.
        pytest.param(["twilio", BACKUP], id="a-failover-chain"),
    ],
)
def test_an_outcome_whose_loss_would_send_again_waits_for_its_flush(api, commits, settings, providers):
    settings.MESSAGE_PROVIDERS = {**settings.MESSAGE_PROVIDERS, "sms": providers}

    response = api.post("/api/messages/sms", payloads.sms(), format="json")

    assert response.status_code == 201, response.content
    assert commits() == [("pending", "on"), ("sent", "on")]


def test_an_outcome_on_the_last_attempt_waits_for_its_flush(api, commits, settings):
    """Lost, it would leave a message whose attempts are used up: the outbox fails those."""
    settings.MAX_ATTEMPTS = 1

    response = api.post("/api/messages/sms", payloads.sms(), format="json")

    assert response.status_code == 201, response.content
    assert commits() == [("pending", "on"), ("sent", "on")]


def test_one_message_that_must_wait_makes_its_whole_batch_wait(commits, settings):
    settings.MAX_ATTEMPTS = 6
    ready, last = _held(), _held(attempts=6)
    commits()  # the factory's inserts, left out

    message_record_attempts(attempts=[_accepted(ready), _accepted(last)])

    assert commits() == [("sent", "on")] * 2


def test_attempts_a_requeue_gave_back_count_as_left(commits, settings):
    settings.MAX_ATTEMPTS = 6
    requeued = _held(attempts=6, attempt_base=1)  # failed after 5, re-queued, on its 6th attempt
    commits()

    message_record_attempts(attempts=[_accepted(requeued)])

    assert commits() == [("sent", "off")]


def test_an_attempt_whose_lease_ran_out_waits_for_its_flush(commits):
    """Its message may already be another attempt's, perhaps the last."""
    overtaken = _held(leased_until=timezone.now() - timedelta(seconds=1))
    commits()

    message_record_attempts(attempts=[_accepted(overtaken)])

    assert commits() == [("sent", "on")]


def test_a_message_pinned_to_the_provider_that_accepted_it_commits_asynchronously_on_a_chain(commits, settings):
    """A retry of a message pinned to one provider goes to that provider alone, failover or not."""
    settings.MESSAGE_PROVIDERS = {**settings.MESSAGE_PROVIDERS, "sms": ["twilio", BACKUP]}
    pinned = _held(metadata={UNCONFIRMED_PROVIDER: "twilio"})
    loose = _held()
    commits()

    message_record_attempts(attempts=[_accepted(pinned)])
    message_record_attempts(attempts=[_accepted(loose)])

    assert commits() == [("sent", "off"), ("sent", "on")]


def test_inside_a_callers_transaction_the_outcome_commits_with_it_as_configured(commits):
    message = _held()
    commits()  # the factory's insert, left out

    with transaction.atomic():
        message_record_attempts(attempts=[_accepted(message)])
        assert synchronous_commit() == "on"  # the caller's other writes keep their durability

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
    assert TwilioProvider().counts() == {"sends": 1, "replays": 1}
