import pytest
from django.urls import reverse

from tests.factories import ConversationFactory, MessageFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_conversation_list_searches_participants_and_filters(staff):
    ConversationFactory(participant_a="+12025550111")
    url = reverse("admin:conversations_conversation_changelist")

    assert staff.get(url, {"q": "+12025550111"}).context["cl"].result_count == 1
    assert staff.get(url, {"channel": "email"}).context["cl"].result_count == 0
    assert staff.get(url, {"status": "open"}).status_code == 200


def test_conversation_page_shows_its_messages_in_order(staff):
    message = MessageFactory(body="<script>alert(1)</script>")
    older = MessageFactory(conversation=message.conversation, timestamp=message.timestamp.replace(year=2020))

    response = staff.get(reverse("admin:conversations_conversation_change", args=[message.conversation_id]))

    assert response.status_code == 200
    content = response.content.decode()
    assert content.index(older.body) < content.index("&lt;script&gt;alert(1)&lt;/script&gt;")
    assert "<script>alert(1)</script>" not in content, "bodies are escaped, never rendered"


@pytest.mark.parametrize("page", ["2", "999999999999999999999", "-5", "x"])
def test_a_transcript_page_out_of_range_is_an_empty_page_not_an_error(staff, page):
    message = MessageFactory(body="only message")

    response = staff.get(
        reverse("admin:conversations_conversation_change", args=[message.conversation_id]), {"page": page}
    )

    assert response.status_code == 200
    assert ("only message" in response.content.decode()) is (page in ("-5", "x"))


def test_message_list_filters_by_status_direction_type_and_provider(staff):
    MessageFactory(status="failed", direction="outbound", last_error={"code": 400, "message": "bad number"})
    url = reverse("admin:messaging_message_changelist")

    response = staff.get(url, {"status": "failed", "direction": "outbound", "type": "sms", "provider": "twilio"})

    assert response.context["cl"].result_count == 1
    assert "400: bad number" in response.content.decode()


def test_message_detail_is_read_only(staff):
    message = MessageFactory()
    url = reverse("admin:messaging_message_change", args=[message.pk])

    assert staff.get(url).status_code == 200
    assert staff.post(url, {"body": "changed"}).status_code == 403


def test_webhook_events_filter_and_show_the_raw_body(staff):
    event = WebhookEvent.objects.create(
        provider="twilio", kind="inbound", event_id="m-1", outcome="rejected", body='{"raw": true}', error="bad"
    )

    changelist = staff.get(
        reverse("admin:webhooks_webhookevent_changelist"), {"outcome": "rejected", "kind": "inbound"}
    )
    detail = staff.get(reverse("admin:webhooks_webhookevent_change", args=[event.pk]))

    assert changelist.context["cl"].result_count == 1
    assert "{&quot;raw&quot;: true}" in detail.content.decode()


def test_conversation_search_understands_unformatted_phone_numbers(staff):
    ConversationFactory(participant_a="+12016661234")
    url = reverse("admin:conversations_conversation_changelist")

    assert staff.get(url, {"q": "201-666-1234"}).context["cl"].result_count == 1
    assert staff.get(url, {"q": "nobody"}).context["cl"].result_count == 0


def test_admin_without_a_slash_redirects_to_the_admin(client):
    response = client.get("/admin")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_search_by_normalised_number_still_honours_the_filters(staff):
    ConversationFactory(participant_a="+12016661234", channel="sms")
    url = reverse("admin:conversations_conversation_changelist")

    assert staff.get(url, {"q": "201-666-1234", "channel": "email"}).context["cl"].result_count == 0
    assert staff.get(url, {"q": "201-666-1234", "channel": "sms"}).context["cl"].result_count == 1


def test_messages_events_and_conversations_cannot_be_deleted_from_the_admin(staff):
    message = MessageFactory()
    event = WebhookEvent.objects.create(provider="twilio", kind="inbound", event_id="e", outcome="processed")

    for name, pk in [
        ("messaging_message", message.pk),
        ("webhooks_webhookevent", event.pk),
        ("conversations_conversation", message.conversation_id),
    ]:
        assert staff.get(reverse(f"admin:{name}_delete", args=[pk])).status_code == 403


def test_retry_now_sends_failed_and_pending_messages_from_the_admin(staff):
    from tests.factories import OutboxMessageFactory

    failed = OutboxMessageFactory(
        status="failed", attempts=6, next_attempt_at=None, last_error={"code": 503, "message": "x"}
    )
    pending = OutboxMessageFactory(attempts=1)
    url = reverse("admin:messaging_message_changelist")

    response = staff.post(url, {"action": "retry_now", "_selected_action": [failed.pk, pending.pk]}, follow=True)

    assert response.status_code == 200
    assert "Attempted 2 of 2" in response.content.decode()
    failed.refresh_from_db()
    pending.refresh_from_db()
    assert (failed.status, failed.attempts) == ("sent", 7)
    assert (pending.status, pending.attempts) == ("sent", 2)


def test_the_failed_messages_view_lists_only_failures_with_their_errors(staff):
    MessageFactory(
        direction="outbound", status="failed", last_error={"code": "30003", "message": "Unreachable handset"}
    )
    MessageFactory(direction="outbound", status="sent")

    response = staff.get(reverse("admin:messaging_failedmessage_changelist"))

    assert response.context["cl"].result_count == 1
    content = response.content.decode()
    assert "30003" in content
    assert "Unreachable handset" in content


def test_replay_from_the_admin_applies_an_orphan(staff, client):
    from urllib.parse import urlencode

    from tests import payloads

    sid = "SM" + "9" * 32
    client.post(
        "/api/webhooks/sms/status",
        data=urlencode(payloads.twilio_status(sid, "delivered")),
        content_type="application/x-www-form-urlencoded",
    )
    message = MessageFactory(direction="outbound", status="sent", provider_message_id=sid)
    event = WebhookEvent.objects.get()

    response = staff.post(
        reverse("admin:webhooks_webhookevent_changelist"),
        {"action": "replay", "_selected_action": [event.pk]},
        follow=True,
    )

    assert "1 changed" in response.content.decode()
    message.refresh_from_db()
    assert message.status == "delivered"
