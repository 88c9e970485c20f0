"""The outbox's concurrency guarantees, forced deterministically instead of hoped for from a race."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from messaging.models import Message
from messaging.outbox import outbox_claim
from messaging.services import _record_failure
from providers.base import ProviderError
from tests.factories import OutboxMessageFactory
from tests.sessions import second_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other_connection():
    """A second database session, as another worker process would have."""
    with second_session() as session:
        yield session


def test_a_claim_skips_a_row_another_session_holds_locked_instead_of_waiting(other_connection):
    held, *free = OutboxMessageFactory.create_batch(3)
    # Another worker is in the middle of claiming the first message: its row lock is held.
    other_connection.execute("SELECT id FROM messaging_message WHERE id = %s FOR UPDATE", [held.pk])

    # Had the claim waited for that lock, this would fail with "canceling statement due to lock timeout".
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")
    try:
        claimed = outbox_claim(limit=3)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert sorted(message.pk for message in claimed) == sorted(message.pk for message in free)
    other_connection.rollback()
    assert [message.pk for message in outbox_claim(limit=3)] == [held.pk]


def test_an_overtaken_sender_records_nothing_when_its_late_attempt_fails():
    OutboxMessageFactory()
    [first_sender_copy] = outbox_claim(limit=1)
    # Its lease runs out mid-send; another worker claims the message (attempt 2) and is sending it.
    Message.objects.filter(pk=first_sender_copy.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    [second_sender_copy] = outbox_claim(limit=1)
    assert second_sender_copy.attempts == first_sender_copy.attempts + 1

    # The first sender's provider call finally fails for good: it must not fail the message the
    # second sender holds.
    _record_failure(
        message=first_sender_copy,
        error=ProviderError(provider="twilio", code="400", message="Bad Request", retryable=False),
    )

    message = Message.objects.get(pk=first_sender_copy.pk)
    assert message.status == "pending"
    assert message.last_error is None
    assert message.leased_until == second_sender_copy.leased_until
