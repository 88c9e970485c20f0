"""The outbox worker: claims, retries, backoff, give-up, takeover after a crash."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from messaging.management.commands import run_worker
from messaging.models import Message
from messaging.outbox import OutboxWorker, WorkerReport, outbox_claim, outbox_deliver_now
from messaging.services import _outbound_for, message_attempt_delivery
from providers.base import Provider, ProviderError
from providers.twilio import TwilioProvider as MockTwilioProvider
from tests.factories import OutboxMessageFactory

pytestmark = pytest.mark.django_db


def forced(code, times=None):
    return {"force_error": {"code": code, "message": None, "times": times}}


def attempt_once(message):
    [claimed] = outbox_claim(limit=1, message_ids=[message.pk])
    return message_attempt_delivery(message=claimed)


def drain(**options):
    return OutboxWorker(concurrency=options.pop("concurrency", 1), once=True, poll_interval=0.05, **options).run()


class TestClaims:
    def test_a_claim_leases_due_messages_so_nobody_else_sees_them(self, settings):
        settings.OUTBOX_LEASE_SECONDS = 60
        due = OutboxMessageFactory.create_batch(3)

        claimed = outbox_claim(limit=10)

        assert sorted(m.pk for m in claimed) == sorted(m.pk for m in due)
        assert outbox_claim(limit=10) == []
        for message in Message.objects.all():
            assert message.leased_until > timezone.now() + timedelta(seconds=55)
            assert message.attempts == 1  # the attempt the claimer is about to make

    def test_messages_not_yet_due_are_not_claimed(self):
        OutboxMessageFactory(next_attempt_at=timezone.now() + timedelta(minutes=5))

        assert outbox_claim(limit=10) == []

    def test_only_pending_outbound_messages_are_claimed(self):
        OutboxMessageFactory(status="sent", next_attempt_at=timezone.now())
        OutboxMessageFactory(direction="inbound", status="received", next_attempt_at=timezone.now())

        assert outbox_claim(limit=10) == []

    def test_a_claim_takes_at_most_the_limit_oldest_due_first(self):
        now = timezone.now()
        oldest = OutboxMessageFactory(next_attempt_at=now - timedelta(minutes=3))
        middle = OutboxMessageFactory(next_attempt_at=now - timedelta(minutes=2))
        OutboxMessageFactory(next_attempt_at=now - timedelta(minutes=1))

        assert [m.pk for m in outbox_claim(limit=2)] == [oldest.pk, middle.pk]

    def test_a_crashed_workers_claims_are_taken_over_when_the_lease_runs_out(self, settings):
        settings.OUTBOX_LEASE_SECONDS = 30
        message = OutboxMessageFactory()
        assert outbox_claim(limit=1)  # this worker dies without recording anything
        assert outbox_claim(limit=1) == []

        Message.objects.filter(pk=message.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
        drain()

        message.refresh_from_db()
        assert message.status == "sent"
        assert message.attempts == 2  # the lost attempt counts

    def test_a_message_whose_last_attempt_was_lost_fails_instead_of_retrying_forever(self, settings):
        settings.MAX_ATTEMPTS = 3
        message = OutboxMessageFactory(attempts=3)  # the third attempt's sender died

        assert outbox_claim(limit=1) == []

        message.refresh_from_db()
        assert (message.status, message.attempts) == ("failed", 3)
        assert message.last_error["code"] == "attempt_lost"

    def test_making_a_held_message_due_does_not_take_it_from_its_holder(self):
        message = OutboxMessageFactory()
        [held] = outbox_claim(limit=1)

        assert outbox_deliver_now(message_ids=[message.pk]) == []

        message.refresh_from_db()
        assert message.attempts == held.attempts == 1
        assert message.leased_until == held.leased_until


class TestRetries:
    def test_a_transient_failure_is_retried_and_counts_every_attempt(self):
        message = OutboxMessageFactory(attempts=1, metadata=forced(503, times=1))

        report = drain()

        message.refresh_from_db()
        assert message.status == "sent"
        assert message.attempts == 2
        assert message.last_error is None
        assert report.attempted == 1

    @pytest.mark.parametrize("code", [429, 500, 502, 503])
    def test_transient_codes_schedule_a_retry_with_backoff(self, settings, code):
        settings.RETRY_BASE_DELAY_SECONDS = 10
        message = OutboxMessageFactory(attempts=1, metadata=forced(code))

        attempt_once(message)

        message.refresh_from_db()
        assert message.status == "pending"
        assert message.attempts == 2
        assert message.last_error["code"] == code
        # Second failure: base * 2, with equal jitter -> between 10 and 20 seconds.
        delay = (message.next_attempt_at - timezone.now()).total_seconds()
        assert 9 <= delay <= 20

    @pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
    def test_other_client_errors_fail_at_once(self, code):
        message = OutboxMessageFactory(attempts=1, metadata=forced(code))

        drain()

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.attempts == 2
        assert message.next_attempt_at is None
        assert message.last_error["code"] == code

    def test_after_the_last_attempt_the_message_fails_with_the_last_error(self, settings):
        settings.MAX_ATTEMPTS = 4
        settings.RETRY_BASE_DELAY_SECONDS = 0
        message = OutboxMessageFactory(attempts=1, metadata=forced(503))

        drain(due_within=5)

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.attempts == 4
        assert message.last_error == {"code": 503, "message": "Service Unavailable"}

    def test_a_providers_retry_after_is_honoured(self, settings):
        settings.MESSAGE_PROVIDERS = {**settings.MESSAGE_PROVIDERS, "sms": f"{__name__}.SlowDownProvider"}
        settings.RETRY_BASE_DELAY_SECONDS = 1
        message = OutboxMessageFactory()

        attempt_once(message)

        message.refresh_from_db()
        assert message.status == "pending"
        assert message.leased_until is None
        assert (message.next_attempt_at - timezone.now()).total_seconds() > 110

    def test_a_message_not_yet_due_is_left_for_a_later_run(self):
        message = OutboxMessageFactory(next_attempt_at=timezone.now() + timedelta(minutes=5))

        report = drain(due_within=1)

        message.refresh_from_db()
        assert message.status == "pending"
        assert report.attempted == 0

    def test_once_waits_for_retries_falling_due_within_its_horizon(self):
        message = OutboxMessageFactory(next_attempt_at=timezone.now() + timedelta(seconds=0.3))

        drain(due_within=2)

        message.refresh_from_db()
        assert message.status == "sent"

    @pytest.mark.django_db(transaction=True)
    def test_several_threads_deliver_each_message_once(self):
        OutboxMessageFactory.create_batch(20)

        report = drain(concurrency=4)

        assert report.attempted == 20
        assert set(Message.objects.values_list("status", "attempts")) == {("sent", 1)}
        assert MockTwilioProvider().counts() == {"sends": 20, "replays": 0}


class SlowDownProvider(Provider):
    name = "twilio"

    def send(self, message):
        raise ProviderError.from_http_status(provider=self.name, status=429, message="Slow down", retry_after=120)


class TestProviderIdempotency:
    def test_a_crash_between_the_providers_acceptance_and_our_commit_does_not_send_twice(self):
        message = OutboxMessageFactory()
        provider = MockTwilioProvider()
        # The worker called the provider, which accepted, then died before recording the result.
        accepted = provider.send(_outbound_for(message))
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))

        drain()

        message.refresh_from_db()
        assert message.status == "sent"
        assert message.provider_message_id == accepted.provider_message_id
        assert provider.counts() == {"sends": 1, "replays": 1}

    def test_every_attempt_of_a_message_carries_the_same_token(self):
        message = OutboxMessageFactory(attempts=2)

        first = _outbound_for(message)
        message.attempts = 3
        second = _outbound_for(message)

        assert first.idempotency_token == second.idempotency_token == str(message.provider_token)
        assert (first.attempt, second.attempt) == (2, 3)


class TestRunWorkerCommand:
    @pytest.mark.django_db(transaction=True)
    def test_once_delivers_what_is_due_and_reports(self, capsys):
        OutboxMessageFactory.create_batch(2)

        call_command("run_worker", "--once", "--concurrency", "2")

        out = capsys.readouterr().out
        assert "Outbox worker done: 2 attempted (2 sent)." in out
        assert set(Message.objects.values_list("status", flat=True)) == {"sent"}

    @pytest.mark.parametrize(("args", "frozen"), [((), [{"urlconf": False}]), (("--once",), [])])
    def test_a_worker_that_keeps_running_freezes_its_start_up_objects(self, monkeypatch, capsys, args, frozen):
        # core/startup.py: a long-running process keeps its start-up objects out of full collections;
        # a single pass (and this test's own process) is left alone.
        calls: list[dict] = []

        def freeze(**kwargs):
            calls.append(kwargs)
            return 123

        monkeypatch.setattr(run_worker, "freeze_start_up_objects", freeze)
        monkeypatch.setattr(OutboxWorker, "run", lambda self: WorkerReport())

        call_command("run_worker", *args)

        assert calls == frozen
        said = "Outbox worker: 123 start-up objects frozen out of the garbage collector." in capsys.readouterr().out
        assert said == bool(frozen)


def test_a_forced_retry_after_from_the_api_delays_the_retry_at_least_that_long(api):
    response = api.post(
        "/api/messages/sms",
        {
            "from": "+12016661234",
            "to": "+18045551234",
            "body": "slow down",
            "_forceError": {"code": 429, "retry_after": 90},
        },
        format="json",
    )

    assert response.status_code == 202
    message = Message.objects.get()
    assert (message.next_attempt_at - timezone.now()).total_seconds() > 85


@pytest.mark.django_db
def test_an_attempt_skipped_because_every_breaker_is_open_waits_without_using_up_attempts(settings):
    from providers.breaker import breaker_record_failure, breaker_reset

    settings.MAX_ATTEMPTS = 2
    for _ in range(settings.PROVIDER_BREAKER_FAILURES):
        breaker_record_failure(provider="twilio")
    message = OutboxMessageFactory(attempts=1, last_error={"code": 503, "message": "Service Unavailable"})
    try:
        for attempt in range(1, 5):
            Message.objects.filter(pk=message.pk).update(attempts=attempt)
            message.refresh_from_db()
            message_attempt_delivery(message=message)

        message.refresh_from_db()
        assert message.status == "pending"
        assert message.attempt_base == 4  # none of the four skipped attempts counted
        assert message.last_error == {"code": 503, "message": "Service Unavailable"}
        assert message.next_attempt_at > timezone.now()
    finally:
        breaker_reset(provider="twilio")


def test_a_database_error_reading_the_next_due_time_never_ends_a_long_running_worker(monkeypatch):
    # The database can go away between a claim and the read of when the next message is due: the
    # long-running worker polls again (and its next claim waits the outage out); --once reports it.
    def unreachable():
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("messaging.outbox.outbox_next_due_at", unreachable)

    assert OutboxWorker(poll_interval=0.3)._until_next_due() == 0.3
    with pytest.raises(OperationalError):
        OutboxWorker(poll_interval=0.3, once=True)._until_next_due()
