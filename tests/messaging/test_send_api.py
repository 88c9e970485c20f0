import re

import pytest
from django.utils import timezone

from conversations.models import Conversation
from messaging.models import Message
from providers.base import Provider, SendResult
from tests import payloads

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {
    "id",
    "conversation_id",
    "direction",
    "type",
    "from",
    "to",
    "body",
    "attachments",
    "status",
    "provider",
    "provider_message_id",
    "client_message_id",
    "timestamp",
    "attempts",
    "next_attempt_at",
    "error",
    "created_at",
    "updated_at",
}


def send(api, channel, body, **headers):
    return api.post(f"/api/messages/{channel}", body, format="json", headers=headers)


def test_sending_an_sms_answers_201_with_the_sent_message(api):
    response = send(api, "sms", payloads.sms())

    assert response.status_code == 201
    body = response.json()
    assert set(body) == MESSAGE_FIELDS
    assert body["status"] == "sent"
    assert body["direction"] == "outbound"
    assert body["type"] == "sms"
    assert body["from"] == "+12016661234"
    assert body["to"] == "+18045551234"
    assert body["provider"] == "twilio"
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["provider_message_id"])
    assert body["attempts"] == 1
    assert body["error"] is None
    assert body["next_attempt_at"] is None
    assert body["timestamp"] == "2024-11-01T14:00:00Z"
    stored = Message.objects.get(pk=body["id"])
    assert stored.status == "sent"
    assert stored.metadata["provider_response"]["sid"] == body["provider_message_id"]


@pytest.mark.parametrize(
    "payload",
    [
        payloads.sms(timestamp="2024-11-01T16:30:00.123456+02:30"),
        payloads.mms(body="", client_message_id="read-back-1"),
        payloads.email(),
        payloads.sms(_forceError={"code": 503}),
        payloads.sms(_forceError={"code": 400}),
    ],
)
def test_the_answer_to_a_send_is_the_stored_row(api, payload):
    # The send answers from the instance it stored (no re-read): it must be what a read of the row gives.
    path = "/api/messages/email" if "html" in payload or "@" in payload["to"] else "/api/messages/sms"
    response = api.post(path, payload, format="json")

    assert response.status_code in (201, 202, 502), response.content
    assert response.json() == api.get(f"/api/messages/{response.json()['id']}").json()


def test_an_sms_with_attachments_is_sent_as_mms(api):
    response = send(api, "sms", payloads.sms(type="sms", attachments=["https://example.com/a.jpg"]))

    assert response.status_code == 201
    assert response.json()["type"] == "mms"
    assert response.json()["provider_message_id"].startswith("MM")
    assert response.json()["attachments"] == ["https://example.com/a.jpg"]


def test_sending_an_email_goes_through_the_sendgrid_like_provider(api):
    response = send(api, "email", payloads.email())

    assert response.status_code == 201
    body = response.json()
    assert body["type"] == "email"
    assert body["provider"] == "sendgrid"
    assert re.fullmatch(r"[0-9a-f]{16}\.filter001\.\d+\.0", body["provider_message_id"])
    assert body["body"] == "Hello! This is a test email message with <b>HTML</b> formatting."


def test_trailing_slash_is_accepted_without_redirect(api):
    assert send(api, "sms/", payloads.sms()).status_code == 201


def test_the_message_is_stored_in_the_conversation_of_its_participants(api):
    body = send(api, "sms", payloads.sms(**{"from": "+1 (201) 666-1234"})).json()

    conversation = Conversation.objects.get(pk=body["conversation_id"])
    assert conversation.channel == "sms"
    assert conversation.participants == ["+12016661234", "+18045551234"]
    assert conversation.message_count == 1
    assert conversation.unread_count == 0, "outbound messages are not unread"
    assert conversation.last_message_preview == "Hello! This is a test SMS message."


def test_a_transient_provider_failure_answers_202_pending_with_a_scheduled_retry(api):
    response = send(api, "sms", payloads.sms(_forceError={"code": 503, "message": "try later"}))

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["attempts"] == 1
    assert body["error"] == {"code": 503, "message": "try later"}
    assert body["next_attempt_at"] is not None
    assert body["provider_message_id"] is None


@pytest.mark.parametrize("code", [429, 500, 503])
def test_429_and_5xx_are_retried(api, code):
    assert send(api, "email", payloads.email(_forceError={"code": code})).status_code == 202


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_other_provider_4xx_fail_the_message_with_502(api, code):
    response = send(api, "sms", payloads.sms(_forceError={"code": code}))

    assert response.status_code == 502
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == code
    assert body["next_attempt_at"] is None
    assert Message.objects.get(pk=body["id"]).status == "failed"


def test_the_last_allowed_attempt_failing_transiently_fails_the_message(api, settings):
    settings.MAX_ATTEMPTS = 1
    response = send(api, "sms", payloads.sms(_forceError={"code": 503}))

    assert response.status_code == 502
    assert response.json()["status"] == "failed"


def test_the_retry_delay_follows_the_backoff_schedule(api, settings):
    settings.RETRY_BASE_DELAY_SECONDS = 100
    response = send(api, "sms", payloads.sms(_forceError={"code": 500}))
    message = Message.objects.get(pk=response.json()["id"])

    delay = (message.next_attempt_at - message.updated_at).total_seconds()
    assert 49 <= delay <= 101


@pytest.mark.django_db(transaction=True)
def test_no_provider_call_happens_inside_a_database_transaction(api, monkeypatch):
    from django.db import connection

    from providers.twilio import TwilioProvider as MockTwilioProvider

    seen = []
    original = MockTwilioProvider.send

    def spy(self, message):
        seen.append(connection.in_atomic_block)
        return original(self, message)

    monkeypatch.setattr(MockTwilioProvider, "send", spy)
    assert send(api, "sms", payloads.sms()).status_code == 201
    assert seen == [False], "the provider was called with a transaction open"


def test_an_unexpected_provider_exception_schedules_a_retry_instead_of_a_500(api, monkeypatch):
    from providers.twilio import TwilioProvider as MockTwilioProvider

    def broken(self, message):
        raise ConnectionResetError("peer reset")

    monkeypatch.setattr(MockTwilioProvider, "send", broken)
    response = send(api, "sms", payloads.sms())

    assert response.status_code == 202
    assert response.json()["error"] == {"code": "provider_error", "message": "ConnectionResetError"}


def test_get_message_returns_it(api):
    sent = send(api, "sms", payloads.sms()).json()

    response = api.get(f"/api/messages/{sent['id']}")

    assert response.status_code == 200
    assert response.json() == sent


@pytest.mark.parametrize("message_id", ["999999", "abc", "1.5", "99999999999999999999999", "-1"])
def test_unknown_or_non_numeric_message_ids_are_404(api, message_id):
    response = api.get(f"/api/messages/{message_id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


class TestIdempotency:
    def test_the_same_client_message_id_and_body_returns_the_original_without_sending_again(self, api):
        first = send(api, "sms", payloads.sms(client_message_id="order-42"))
        again = send(api, "sms", payloads.sms(client_message_id="order-42"))

        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert Message.objects.count() == 1

    def test_the_idempotency_key_header_works_like_client_message_id(self, api):
        first = send(api, "email", payloads.email(), **{"Idempotency-Key": "k-1"})
        again = send(api, "email", payloads.email(), **{"Idempotency-Key": "k-1"})

        assert again.json()["id"] == first.json()["id"]
        assert first.json()["client_message_id"] == "k-1"

    def test_the_same_key_with_another_body_is_422(self, api):
        send(api, "sms", payloads.sms(client_message_id="order-43"))
        response = send(api, "sms", payloads.sms(client_message_id="order-43", body="something else"))

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert Message.objects.count() == 1

    def test_keys_are_scoped_per_channel(self, api):
        assert send(api, "sms", payloads.sms(client_message_id="same")).status_code == 201
        assert send(api, "email", payloads.email(client_message_id="same")).status_code == 201
        assert Message.objects.count() == 2

    def test_a_replayed_pending_message_answers_202_again(self, api):
        body = payloads.sms(client_message_id="retrying", _forceError={"code": 503})
        assert send(api, "sms", body).status_code == 202
        assert send(api, "sms", body).status_code == 202
        assert Message.objects.get().attempts == 1, "no second provider attempt"


class TestIdempotentRetriesWithoutTimestamp:
    def test_a_retry_without_a_timestamp_matches_the_original(self, api):
        body = payloads.sms(client_message_id="no-ts")
        del body["timestamp"]

        first = send(api, "sms", body)
        again = send(api, "sms", body)

        assert again.status_code == 201
        assert again.json()["id"] == first.json()["id"]

    def test_a_message_without_a_timestamp_is_stamped_with_its_arrival(self, api):
        body = payloads.sms()
        del body["timestamp"]

        message = Message.objects.get(pk=send(api, "sms", body).json()["id"])

        assert abs((message.timestamp - message.created_at).total_seconds()) < 5

    @pytest.mark.parametrize("key", ["", "   ", "k" * 256])
    def test_a_blank_or_oversized_idempotency_key_is_400(self, api, key):
        assert send(api, "sms", payloads.sms(), **{"Idempotency-Key": key}).status_code == 400


def test_hostile_html_in_an_email_body_is_stored_and_previewed_without_error(api):
    body = "<a" * 501
    response = send(api, "email", payloads.email(body=body))

    assert response.status_code == 201
    assert Message.objects.get().body == body


def test_email_previews_are_text_without_tags_scripts_or_entities(api):
    body = "<html><head><title>T</title></head><body>Hi &amp; <b>bold</b><script>x()</script></body></html>"
    conversation_id = send(api, "email", payloads.email(body=body)).json()["conversation_id"]

    assert Conversation.objects.get(pk=conversation_id).last_message_preview == "Hi & bold"


def test_provider_ids_cannot_be_predicted_from_message_ids(api):
    first = send(api, "sms", payloads.sms()).json()
    second = send(api, "sms", payloads.sms(body="again")).json()

    tokens = set(Message.objects.values_list("provider_token", flat=True))
    assert len(tokens) == 2
    assert first["provider_message_id"] != second["provider_message_id"]


def test_a_provider_id_already_stored_fails_the_send_instead_of_a_500(api, monkeypatch):
    from providers.base import SendResult
    from providers.twilio import TwilioProvider as MockTwilioProvider
    from tests.factories import MessageFactory

    MessageFactory(direction="outbound", status="sent", provider="twilio", provider_message_id="SMtaken")
    monkeypatch.setattr(
        MockTwilioProvider, "accept", lambda self, message: SendResult("twilio", "SMtaken", "queued", {})
    )

    response = send(api, "sms", payloads.sms())

    assert response.status_code == 502
    assert response.json()["status"] == "failed"
    assert response.json()["error"]["code"] == "provider_id_conflict"
    assert response.json()["provider_message_id"] is None


def test_a_repeat_while_the_original_is_still_in_flight_is_409(api, settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.1
    body = payloads.sms(client_message_id="in-flight")
    first = send(api, "sms", body).json()
    # Rewind it to "stored, first attempt not finished" with the same request fingerprint.
    Message.objects.filter(pk=first["id"]).update(status="pending", first_outcome="", next_attempt_at=timezone.now())

    response = send(api, "sms", body)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert Message.objects.count() == 1


def test_a_repeat_after_the_worker_sent_it_answers_with_the_original_code_and_the_current_message(api):
    from messaging.outbox import OutboxWorker

    body = payloads.sms(_forceError={"code": 503, "times": 1})
    first = send(api, "sms", body, **{"Idempotency-Key": "retry-me"})
    assert first.status_code == 202
    Message.objects.update(next_attempt_at=timezone.now())
    OutboxWorker(concurrency=1, once=True).run()

    repeat = send(api, "sms", body, **{"Idempotency-Key": "retry-me"})

    assert repeat.status_code == 202
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json()["id"] == first.json()["id"]
    assert repeat.json()["status"] == "sent"
    assert repeat.json()["attempts"] == 2
    assert Message.objects.count() == 1


class RealProvider(Provider):
    """Stands in for a real adapter: it does not simulate failures."""

    name = "twilio"

    def send(self, message):
        return SendResult(provider=self.name, provider_message_id="SM" + "e" * 32, status="queued")


def test_force_error_is_refused_unless_a_mock_provider_serves_the_channel(api, settings):
    settings.MESSAGE_PROVIDERS = {**settings.MESSAGE_PROVIDERS, "sms": f"{__name__}.RealProvider"}

    refused = send(api, "sms", payloads.sms(_forceError={"code": 503}))
    allowed = send(api, "sms", payloads.sms())

    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {
        "_forceError": ["Only accepted while this channel uses a mock provider."]
    }
    assert allowed.status_code == 201
    assert Message.objects.count() == 1


def test_a_send_counts_its_message_in_the_thread_once_and_a_repeat_counts_nothing(api):
    first = send(api, "sms", payloads.sms(client_message_id="count-me", body="first words"))
    send(api, "sms", payloads.sms(client_message_id="count-me", body="first words"))
    send(api, "sms", payloads.sms(client_message_id="count-me", body="another body"))  # 422

    conversation = Conversation.objects.get()
    assert first.json()["conversation_id"] == conversation.pk
    assert (conversation.message_count, conversation.unread_count) == (1, 0)
    assert conversation.last_message_preview == "first words"
    assert conversation.last_message_direction == "outbound"


def test_an_inline_send_records_its_acceptance_in_the_one_statement_update(api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = send(api, "sms", payloads.sms())

    assert response.status_code == 201
    updates = [query["sql"] for query in queries if " SET " in query["sql"] and "INSERT" not in query["sql"]]
    assert len(updates) == 1
    # messaging.services._record_successes's statement for one message, not an ORM UPDATE
    assert updates[0].startswith('UPDATE "messaging_message" AS m SET status = ')
    assert "WHERE m.id = " in updates[0]
    message = Message.objects.get(pk=response.json()["id"])
    assert (message.status, message.first_outcome) == ("sent", "sent")
    assert message.provider_message_id == response.json()["provider_message_id"]
    assert message.metadata["provider_response"]["sid"] == message.provider_message_id
