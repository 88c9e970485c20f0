"""Asynchronous sends: ``Prefer: respond-async`` and SEND_MODE=queue store the message pending, due
now, answer 202 at once, and leave the delivery to the outbox."""

import pytest
from django.utils import timezone

from messaging.models import Message
from messaging.outbox import OutboxWorker, outbox_claim
from providers.twilio import TwilioProvider
from tests import payloads

pytestmark = pytest.mark.django_db

DAY = 86400
ASYNC = {"Prefer": "respond-async"}


def send(api, channel, body, **headers):
    return api.post(f"/api/messages/{channel}", body, format="json", headers=headers)


@pytest.fixture
def provider_calls(monkeypatch):
    calls = []
    original = TwilioProvider.send

    def counting_send(self, message):
        calls.append(message.idempotency_token)
        return original(self, message)

    monkeypatch.setattr(TwilioProvider, "send", counting_send)
    return calls


def drain():
    return OutboxWorker(concurrency=1, once=True, poll_interval=0.05).run()


def test_prefer_respond_async_stores_the_message_pending_and_answers_202_without_a_provider_call(api, provider_calls):
    before = timezone.now()
    response = send(api, "sms", payloads.sms(), **ASYNC)

    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "respond-async"
    body = response.json()
    assert body["status"] == "pending"
    assert body["attempts"] == 0
    assert body["provider_message_id"] is None
    assert body["error"] is None
    assert provider_calls == []
    stored = Message.objects.get(pk=body["id"])
    assert stored.status == "pending"
    assert stored.leased_until is None
    assert before <= stored.next_attempt_at <= timezone.now()


def test_the_outbox_delivers_a_queued_send_once(api, provider_calls):
    message_id = send(api, "sms", payloads.sms(), **ASYNC).json()["id"]

    report = drain()
    drain()

    assert report.attempted == 1
    assert len(provider_calls) == 1
    delivered = api.get(f"/api/messages/{message_id}").json()
    assert delivered["status"] == "sent"
    assert delivered["attempts"] == 1
    assert delivered["provider_message_id"].startswith("SM")


def test_a_queued_send_is_claimable_at_once(api):
    message_id = send(api, "email", payloads.email(), **ASYNC).json()["id"]

    assert [m.pk for m in outbox_claim(limit=10)] == [message_id]


def test_preferences_are_read_case_insensitively_among_others(api, provider_calls):
    response = send(api, "sms", payloads.sms(), Prefer="return=minimal, Respond-Async; wait=5")

    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "respond-async"
    assert provider_calls == []


def test_without_the_preference_the_send_is_inline(api, provider_calls):
    response = send(api, "sms", payloads.sms(), Prefer="return=minimal")

    assert response.status_code == 201
    assert "Preference-Applied" not in response.headers
    assert len(provider_calls) == 1


def test_send_mode_queue_makes_every_send_asynchronous(api, settings, provider_calls):
    settings.SEND_MODE = "queue"

    sms = send(api, "sms", payloads.sms())
    unified = api.post("/api/messages", {**payloads.sms(), "channel": "sms"}, format="json")

    assert sms.status_code == unified.status_code == 202
    assert sms.json()["status"] == unified.json()["status"] == "pending"
    assert "Preference-Applied" not in sms.headers  # nobody asked: queueing is the service's mode
    assert provider_calls == []
    assert drain().attempted == 2
    assert len(provider_calls) == 2
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_a_repeated_async_send_answers_202_with_the_same_message_and_sends_it_once(api, provider_calls):
    body = payloads.sms(client_message_id="async-1")
    first = send(api, "sms", body, **ASYNC)
    again = send(api, "sms", body, **ASYNC)

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    drain()
    after_delivery = send(api, "sms", body, **{"Idempotency-Key": "async-1"})

    assert after_delivery.status_code == 202, "a repeat answers with the first answer's code"
    assert after_delivery.json()["status"] == "sent"
    assert Message.objects.count() == 1
    assert len(provider_calls) == 1


def test_an_async_send_reusing_a_key_with_another_body_is_422(api):
    send(api, "sms", payloads.sms(client_message_id="async-2"), **ASYNC)

    response = send(api, "sms", payloads.sms(client_message_id="async-2", body="other"), **ASYNC)

    assert response.status_code == 422
    assert Message.objects.count() == 1


def test_async_sends_are_rate_limited_with_the_same_headers(api, settings):
    settings.SMS_RATE_LIMIT = (2, DAY)

    answers = [send(api, "sms", payloads.sms(), **ASYNC) for _ in range(3)]

    assert [r.status_code for r in answers] == [202, 202, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["1", "0", "0"]
    assert "Retry-After" in answers[2].headers
    assert Message.objects.count() == 2


def test_an_invalid_async_send_is_400_and_stores_nothing(api):
    response = send(api, "sms", payloads.sms(to="not a number"), **ASYNC)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert Message.objects.count() == 0


def test_a_queued_send_that_fails_transiently_is_retried_by_the_outbox(api):
    body = payloads.sms(_forceError={"code": 503, "times": 1})
    message_id = send(api, "sms", body, **ASYNC).json()["id"]

    drain()
    Message.objects.filter(pk=message_id).update(next_attempt_at=timezone.now())
    drain()

    message = Message.objects.get(pk=message_id)
    assert message.status == "sent"
    assert message.attempts == 2
