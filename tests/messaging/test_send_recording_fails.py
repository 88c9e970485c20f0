"""A send the provider accepted is never answered 5xx because its outcome could not be recorded: it is
answered 202 pending, and the outbox later records it through the idempotency token, without a second
send."""

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from messaging.models import Message
from messaging.outbox import OutboxWorker
from providers.twilio import TwilioProvider as MockTwilioProvider

pytestmark = pytest.mark.django_db


def _message_updates_fail(execute, sql, params, many, context):
    # The database going away just after the provider call: recording the outcome is an UPDATE.
    if 'UPDATE "MESSAGING_MESSAGE"' in sql.upper():
        raise OperationalError("server closed the connection unexpectedly")
    return execute(sql, params, many, context)


def test_an_accepted_send_whose_recording_fails_is_answered_202_pending(api, sms_payload):
    with connection.execute_wrapper(_message_updates_fail):
        response = api.post("/api/messages/sms", sms_payload, format="json")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    message = Message.objects.get(pk=response.json()["id"])
    assert message.status == "pending"
    assert MockTwilioProvider().counts() == {"sends": 1, "replays": 0}


def test_the_outbox_then_records_it_through_the_idempotency_token_without_sending_again(api, sms_payload):
    with connection.execute_wrapper(_message_updates_fail):
        message_id = api.post("/api/messages/sms", sms_payload, format="json").json()["id"]
    # The inline attempt's lease runs out; a worker takes the message over.
    Message.objects.filter(pk=message_id).update(leased_until=timezone.now() - timedelta(seconds=1))

    OutboxWorker(concurrency=1, once=True).run()

    message = Message.objects.get(pk=message_id)
    assert message.status == "sent"
    assert message.provider_message_id
    assert MockTwilioProvider().counts() == {"sends": 1, "replays": 1}


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: no test transaction to break
def test_a_failed_attempt_whose_recording_fails_is_also_answered_202_pending(api, sms_payload):
    sms_payload["_forceError"] = {"code": 503}
    with connection.execute_wrapper(_message_updates_fail):
        response = api.post("/api/messages/sms", sms_payload, format="json")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
