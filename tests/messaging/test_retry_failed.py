from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from messaging.models import Message
from messaging.outbox import OutboxWorker
from tests.factories import OutboxMessageFactory

pytestmark = pytest.mark.django_db


def retry_failed(*args):
    out = StringIO()
    call_command("retry_failed", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def failed(**fields):
    defaults = {"status": "failed", "attempts": 6, "next_attempt_at": None, "last_error": {"code": 503, "message": "x"}}
    return OutboxMessageFactory(**(defaults | fields))


def drain():
    OutboxWorker(concurrency=1, once=True, poll_interval=0.05).run()


def test_a_requeued_message_gets_max_attempts_more_and_is_sent_by_the_worker():
    message = failed()

    output = retry_failed(str(message.pk))

    assert f"Re-queued 1 message(s) for the outbox worker: [{message.pk}]" in output
    message.refresh_from_db()
    assert (message.status, message.attempt_base, message.attempts) == ("pending", 6, 6)
    drain()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 7)


def test_a_message_the_provider_had_accepted_is_sent_again_as_a_new_provider_message():
    message = failed(provider_message_id="SM" + "1" * 32, last_error={"code": "30003", "message": "Unreachable"})
    old_token = message.provider_token

    retry_failed(str(message.pk))
    drain()

    message.refresh_from_db()
    assert message.status == "sent"
    assert message.provider_token != old_token
    assert message.provider_message_id not in (None, "SM" + "1" * 32)
    assert message.metadata["previous_provider_message_ids"] == ["SM" + "1" * 32]


def test_a_message_the_provider_never_confirmed_keeps_its_token():
    message = failed()
    token = message.provider_token

    retry_failed("--all")

    message.refresh_from_db()
    assert message.provider_token == token


def test_filters_by_error_code_as_number_or_text():
    by_number = failed()
    by_text = failed(last_error={"code": "30003", "message": "Unreachable"})

    assert f"[{by_number.pk}]" in retry_failed("--error-code", "503")
    assert f"[{by_text.pk}]" in retry_failed("--error-code", "30003")


def test_only_failed_outbound_messages_are_requeued():
    sent = OutboxMessageFactory(status="sent", next_attempt_at=None)

    assert "Re-queued 0" in retry_failed(str(sent.pk))
    assert Message.objects.get().status == "sent"


def test_a_dry_run_changes_nothing():
    message = failed()

    assert "would re-queue" in retry_failed("--all", "--dry-run")
    message.refresh_from_db()
    assert message.status == "failed"


def test_without_a_selection_it_refuses():
    with pytest.raises(CommandError, match="Say which messages"):
        retry_failed()


def test_an_error_code_in_other_digits_is_matched_as_text_not_a_crash():
    assert "Re-queued 0" in retry_failed("--error-code", "²")
