import json
from urllib.parse import urlencode

import pytest

from messaging.services import message_attempt_delivery
from tests import payloads
from tests.factories import MessageFactory, OutboxMessageFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

TWILIO = "/api/webhooks/sms/status"
SENDGRID = "/api/webhooks/email/events"


def twilio_form(client, sid, status, **extra):
    body = urlencode(payloads.twilio_status(sid, status, **extra))
    return client.post(TWILIO, data=body, content_type="application/x-www-form-urlencoded")


def sendgrid(client, events):
    return client.post(SENDGRID, data=json.dumps(events), content_type="application/json")


def sent_sms(sid="SM" + "a" * 32, **fields):
    return MessageFactory(direction="outbound", status="sent", provider="twilio", provider_message_id=sid, **fields)


def sent_email(message_id="5f0b6ab3a4b1c43d.filter001.1730469600.0"):
    return MessageFactory(
        conversation__channel="email",
        conversation__participant_a="user@usehatchapp.com",
        conversation__participant_b="contact@gmail.com",
        type="email",
        direction="outbound",
        status="sent",
        provider="sendgrid",
        provider_message_id=message_id,
    )


class TestTwilioStatusCallbacks:
    def test_a_form_encoded_delivered_callback_marks_the_message_delivered(self, client):
        message = sent_sms()

        response = twilio_form(client, message.provider_message_id, "delivered")

        assert response.status_code == 200
        assert response.json() == {
            "status": "processed",
            "event_id": f"{message.provider_message_id}:delivered",
            "message_id": message.pk,
        }
        message.refresh_from_db()
        assert message.status == "delivered"
        event = WebhookEvent.objects.get()
        assert (event.kind, event.outcome, event.event_type, event.message_id) == (
            "status",
            "processed",
            "delivered",
            message.pk,
        )
        assert event.note == "status -> delivered"
        assert event.content_type == "application/x-www-form-urlencoded"

    def test_the_same_fields_as_json_are_accepted(self, client):
        message = sent_sms()
        body = payloads.twilio_status(message.provider_message_id, "delivered")

        response = client.post(TWILIO, data=json.dumps(body), content_type="application/json")

        assert response.status_code == 200
        message.refresh_from_db()
        assert message.status == "delivered"

    def test_undelivered_fails_the_message_and_keeps_the_providers_error(self, client):
        message = sent_sms()

        twilio_form(client, message.provider_message_id, "undelivered", ErrorCode="30003")

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.last_error == {"code": "30003", "message": "Unreachable destination handset"}

    def test_the_providers_error_message_wins_over_the_code_table(self, client):
        message = sent_sms()

        twilio_form(client, message.provider_message_id, "failed", ErrorCode="30008", ErrorMessage="Carrier said no")

        message.refresh_from_db()
        assert message.last_error == {"code": "30008", "message": "Carrier said no"}

    def test_a_repeated_callback_is_a_duplicate_and_changes_nothing(self, client):
        message = sent_sms()
        twilio_form(client, message.provider_message_id, "delivered")

        response = twilio_form(client, message.provider_message_id, "delivered")

        assert response.status_code == 200
        assert response.json()["status"] == "duplicate"
        assert WebhookEvent.objects.filter(outcome="processed").count() == 1
        assert WebhookEvent.objects.filter(outcome="duplicate").count() == 1

    def test_a_late_sent_never_undoes_delivered(self, client):
        message = sent_sms()
        twilio_form(client, message.provider_message_id, "delivered")

        response = twilio_form(client, message.provider_message_id, "sent")

        assert response.json()["status"] == "processed"
        message.refresh_from_db()
        assert message.status == "delivered"
        assert WebhookEvent.objects.get(event_type="sent").note == "kept: already delivered"

    def test_a_late_delivered_does_not_revive_a_failed_message(self, client):
        message = sent_sms()
        twilio_form(client, message.provider_message_id, "undelivered", ErrorCode="30005")

        twilio_form(client, message.provider_message_id, "delivered")

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.last_error["code"] == "30005"

    def test_an_unknown_status_is_kept_without_changing_the_message(self, client):
        message = sent_sms()

        response = twilio_form(client, message.provider_message_id, "teleported", SomethingNew="x")

        assert response.status_code == 200
        message.refresh_from_db()
        assert message.status == "sent"
        assert "unknown status" in WebhookEvent.objects.get().note

    def test_the_legacy_sms_field_names_are_enough(self, client):
        message = sent_sms()
        body = urlencode({"SmsSid": message.provider_message_id, "SmsStatus": "delivered"})

        client.post(TWILIO, data=body, content_type="application/x-www-form-urlencoded")

        message.refresh_from_db()
        assert message.status == "delivered"

    def test_a_callback_for_an_unknown_sid_is_kept_as_an_orphan(self, client):
        response = twilio_form(client, "SM" + "f" * 32, "delivered")

        assert response.status_code == 200
        assert response.json() == {"status": "orphan", "event_id": "SM" + "f" * 32 + ":delivered", "message_id": None}
        assert WebhookEvent.objects.get().outcome == "orphan"

    @pytest.mark.parametrize(
        ("body", "content_type", "status_code"),
        [
            (urlencode({"MessageStatus": "delivered"}), "application/x-www-form-urlencoded", 400),
            (urlencode({"MessageSid": "SM1"}), "application/x-www-form-urlencoded", 400),
            ("MessageSid=SM1&MessageStatus=" + "x" * 65, "application/x-www-form-urlencoded", 400),
            (json.dumps({"MessageSid": 5.5, "MessageStatus": "sent"}), "application/json", 400),
            (json.dumps(["MessageSid"]), "application/json", 400),
            ("{not json", "application/json", 400),
            (b"MessageSid=\xff", "application/x-www-form-urlencoded", 400),
            ("MessageSid=SM1", "text/plain", 415),
        ],
    )
    def test_malformed_callbacks_are_rejected_and_kept(self, client, body, content_type, status_code):
        response = client.post(TWILIO, data=body, content_type=content_type)

        assert response.status_code == status_code
        assert "error" in response.json()
        event = WebhookEvent.objects.get()
        assert (event.kind, event.outcome) == ("status", "rejected")


class TestTwilioCallbackFieldsAsTheSchemaStatesThem:
    """Found by schemathesis (bin/fuzz.sh): the callback is accepted or refused by the four fields read,
    whatever the status, and the fields the service ignores are never a reason to refuse it."""

    def test_a_malformed_error_message_is_refused_even_when_the_status_needs_no_error(self, client):
        body = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered", "ErrorMessage": {}}

        response = client.post(TWILIO, data=json.dumps(body), content_type="application/json")

        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "validation_error",
            "message": "ErrorMessage: Must be a string.",
            "details": {"ErrorMessage": ["Must be a string."]},
        }

    def test_a_json_number_is_not_a_sid(self, client):
        response = client.post(
            TWILIO, data=json.dumps({"MessageSid": 12345, "MessageStatus": "sent"}), content_type="application/json"
        )

        assert response.status_code == 400
        assert response.json()["error"]["details"] == {"MessageSid": ["Must be a string."]}

    def test_null_optional_fields_count_as_absent(self, client):
        message = sent_sms()
        body = {
            "MessageSid": message.provider_message_id,
            "MessageStatus": "undelivered",
            "ErrorCode": None,
            "ErrorMessage": None,
        }

        response = client.post(TWILIO, data=json.dumps(body), content_type="application/json")

        assert response.status_code == 200
        assert response.json()["status"] == "processed"
        message.refresh_from_db()
        assert message.last_error == {"code": "undelivered", "message": "Message undelivered"}

    def test_fields_the_service_does_not_read_may_hold_anything(self, client):
        body = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "sent", "ApiVersion": {}, "AccountSid": 7}

        response = client.post(TWILIO, data=json.dumps(body), content_type="application/json")

        assert response.status_code == 200
        assert response.json() == {"status": "orphan", "event_id": "SM" + "b" * 32 + ":sent", "message_id": None}

    def test_a_field_the_service_reads_given_twice_is_refused(self, client):
        body = "MessageSid=SM1&MessageStatus=delivered&MessageStatus=failed"

        response = client.post(TWILIO, data=body, content_type="application/x-www-form-urlencoded")

        assert response.status_code == 400
        assert response.json()["error"]["details"] == {"MessageStatus": ["Must be a single string."]}
        assert WebhookEvent.objects.get().outcome == "rejected"

    def test_other_fields_may_repeat(self, client):
        body = "MessageSid=SM1&MessageStatus=sent&To=%2B18045551234&To=%2B18045550000"

        response = client.post(TWILIO, data=body, content_type="application/x-www-form-urlencoded")

        assert response.status_code == 200
        assert response.json() == {"status": "orphan", "event_id": "SM1:sent", "message_id": None}

    @pytest.mark.parametrize("blank", ["\x1d", "\x85", " \u3000 "])
    def test_a_status_of_python_whitespace_only_is_refused(self, client, blank):
        body = urlencode({"MessageSid": "SM1", "MessageStatus": blank})

        response = client.post(TWILIO, data=body, content_type="application/x-www-form-urlencoded")

        assert response.status_code == 400
        assert list(response.json()["error"]["details"]) == ["MessageStatus"]


class TestOrphans:
    def test_statuses_that_beat_the_send_are_applied_when_its_provider_id_is_stored(self, client):
        message = OutboxMessageFactory()
        sid = expected_twilio_sid(message)
        # Delivered arrives first, then sent: both before our send has recorded the sid.
        twilio_form(client, sid, "delivered")
        twilio_form(client, sid, "sent")
        assert WebhookEvent.objects.filter(outcome="orphan").count() == 2

        message_attempt_delivery(message=message)

        message.refresh_from_db()
        assert message.provider_message_id == sid
        assert message.status == "delivered"
        assert WebhookEvent.objects.filter(outcome="orphan").count() == 0
        notes = list(WebhookEvent.objects.order_by("id").values_list("note", flat=True))
        assert notes == [
            "status -> delivered (arrived before the message)",
            "kept: already delivered (arrived before the message)",
        ]

    def test_a_sendgrid_orphan_matches_by_message_id_without_the_filter_suffix(self, client):
        sendgrid(client, [payloads.sendgrid_event("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "delivered")])
        assert WebhookEvent.objects.get().provider_message_id == "14c5d75ce93.dfd.64b469"
        message = sent_email(message_id="14c5d75ce93.dfd.64b469")

        from webhooks.services import webhook_apply_orphans

        webhook_apply_orphans(provider="sendgrid", provider_message_id="14c5d75ce93.dfd.64b469", message_id=message.pk)

        message.refresh_from_db()
        assert message.status == "delivered"


def expected_twilio_sid(message):
    from messaging.services import _outbound_for
    from providers.twilio import TwilioProvider as MockTwilioProvider

    return MockTwilioProvider().accept(_outbound_for(message)).provider_message_id


class TestSendGridEvents:
    def test_a_batch_is_applied_event_by_event_and_reported(self, client):
        message = sent_email()
        mid = message.provider_message_id
        delivered = payloads.sendgrid_event(mid, "delivered")
        events = [
            payloads.sendgrid_event(mid, "processed"),
            delivered,
            delivered,  # a duplicate within the batch
            {"event": "open", "sg_message_id": mid},  # malformed: no sg_event_id
            "not an event",
            payloads.sendgrid_event(mid, "open"),
            payloads.sendgrid_event("unknown.filter001.1.0", "delivered"),
        ]

        response = sendgrid(client, events)

        assert response.status_code == 200
        body = response.json()
        assert {key: body[key] for key in ("received", "processed", "duplicate", "orphan", "rejected", "error")} == {
            "received": 7,
            "processed": 3,
            "duplicate": 1,
            "orphan": 1,
            "rejected": 2,
            "error": 0,
        }
        assert [event["status"] for event in body["events"]] == [
            "processed",
            "processed",
            "duplicate",
            "rejected",
            "rejected",
            "processed",
            "orphan",
        ]
        assert body["events"][1] == {
            "index": 1,
            "event_id": delivered["sg_event_id"],
            "status": "processed",
            "message_id": message.pk,
        }
        assert "sg_event_id" in body["events"][3]["error"]
        message.refresh_from_db()
        assert message.status == "delivered"
        assert WebhookEvent.objects.count() == 7
        assert WebhookEvent.objects.get(event_type="open").note == "recorded (open), no change"

    @pytest.mark.parametrize("event", ["bounce", "dropped", "blocked"])
    def test_bounces_and_drops_fail_the_message_with_the_reason(self, client, event):
        message = sent_email()

        sendgrid(
            client,
            [payloads.sendgrid_event(message.provider_message_id, event, reason="550 no such user", status="5.1.1")],
        )

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.last_error == {"code": "5.1.1", "message": "550 no such user"}

    @pytest.mark.parametrize("event", ["open", "click", "spamreport", "unsubscribe", "deferred"])
    def test_engagement_and_deferrals_are_recorded_without_a_status_change(self, client, event):
        message = sent_email()

        sendgrid(client, [payloads.sendgrid_event(message.provider_message_id, event)])

        message.refresh_from_db()
        assert message.status == "sent"
        assert WebhookEvent.objects.get().message_id == message.pk

    def test_a_single_event_object_is_taken_as_a_batch_of_one(self, client):
        message = sent_email()

        response = sendgrid(client, payloads.sendgrid_event(message.provider_message_id, "delivered"))

        assert response.json()["received"] == 1
        message.refresh_from_db()
        assert message.status == "delivered"

    def test_an_empty_batch_is_fine(self, client):
        response = sendgrid(client, [])

        assert response.status_code == 200
        assert response.json()["received"] == 0

    @pytest.mark.parametrize(
        ("body", "content_type", "status_code"),
        [("[{", "application/json", 400), ("42", "application/json", 400), ("[]", "text/plain", 415)],
    )
    def test_a_malformed_batch_is_rejected_whole_and_kept(self, client, body, content_type, status_code):
        response = client.post(SENDGRID, data=body, content_type=content_type)

        assert response.status_code == status_code
        assert WebhookEvent.objects.get().outcome == "rejected"


class TestHostileStatusInput:
    def test_an_overlong_sid_is_rejected_and_kept(self, client):
        response = twilio_form(client, "S" * 250, "delivered")

        assert response.status_code == 400
        assert WebhookEvent.objects.get().outcome == "rejected"

    @pytest.mark.parametrize("status", ["İ" * 64, "\u0001" * 64, "deli vered", "x" * 65])
    def test_a_status_that_is_not_a_plain_name_is_rejected_and_kept(self, client, status):
        body = json.dumps({"MessageSid": "SM" + "a" * 32, "MessageStatus": status})

        response = client.post(TWILIO, data=body, content_type="application/json")

        assert response.status_code == 400
        assert WebhookEvent.objects.get().outcome == "rejected"

    def test_a_sendgrid_event_with_such_a_name_is_rejected_alone(self, client):
        response = sendgrid(client, [payloads.sendgrid_event("m.filter001.1.0", "İ" * 64)])

        assert response.status_code == 200
        assert response.json()["rejected"] == 1
        assert WebhookEvent.objects.get().outcome == "rejected"

    def test_a_bounce_with_an_odd_reason_still_fails_the_message(self, client):
        message = sent_email()

        sendgrid(client, [payloads.sendgrid_event(message.provider_message_id, "bounce", reason=1.5, status=["5.1.1"])])

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.last_error == {"code": "bounce", "message": "Email bounce"}

    def test_a_batch_over_the_limit_is_refused_whole(self, client, settings):
        settings.SENDGRID_MAX_EVENTS_PER_BATCH = 3

        response = sendgrid(client, [0, 0, 0, 0])

        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_many_events"
        assert WebhookEvent.objects.get().outcome == "rejected"
