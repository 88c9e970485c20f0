"""The back office as support staff use it: transcript, reply, actions, lists, search, dashboard."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation
from messaging.models import Message
from tests import payloads
from tests.factories import ConversationFactory, MessageFactory, OutboxMessageFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def staff(admin_client):
    return admin_client


def transcript_url(conversation):
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def thread(count, **conversation_fields):
    conversation = ConversationFactory(**conversation_fields)
    Message.objects.bulk_create(
        [
            MessageFactory.build(
                conversation=conversation,
                body=f"message {i}",
                timestamp=T0 + timedelta(seconds=i),
                direction="inbound" if i % 2 else "outbound",
                status="received" if i % 2 else "delivered",
                provider_message_id=f"SM{conversation.pk:08d}{i:024d}",
            )
            for i in range(count)
        ]
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        message_count=count, unread_count=3, last_message_at=T0 + timedelta(seconds=count - 1)
    )
    return conversation


def sent_conversation(api):
    response = api.post("/api/messages/sms", payloads.sms(), format="json")
    assert response.status_code == 201
    return Conversation.objects.get(pk=response.json()["conversation_id"])


class TestTranscript:
    def test_shows_the_newest_50_oldest_at_the_top_with_a_link_to_older(self, staff):
        conversation = thread(60)

        content = staff.get(transcript_url(conversation)).content.decode()

        assert "message 10<" in content
        assert "message 59<" in content
        assert "message 9<" not in content
        assert content.index("message 10<") < content.index("message 59<")
        assert "?page=2" in content

    def test_older_page(self, staff):
        conversation = thread(60)

        content = staff.get(transcript_url(conversation), {"page": 2}).content.decode()

        assert "message 0<" in content
        assert "message 9<" in content
        assert "message 10<" not in content

    def test_inbound_left_outbound_right_with_time_seconds_and_zone(self, staff):
        conversation = thread(2)

        content = staff.get(transcript_url(conversation)).content.decode()

        assert re.search(r'class="bo-message bo-out[^"]*"', content)
        assert re.search(r'class="bo-message bo-in[^"]*"', content)
        assert "2026-01-01 12:00:00 UTC" in content

    def test_a_failed_message_shows_its_code_and_message(self, staff):
        message = MessageFactory(
            direction="outbound", status="failed", last_error={"code": 30003, "message": "Unreachable handset"}
        )

        content = staff.get(transcript_url(message.conversation)).content.decode()

        assert "bo-status-failed" in content
        assert "30003: Unreachable handset" in content
        assert "{&quot;code&quot;" not in content, "errors are readable, not raw JSON"

    def test_pending_says_when_the_next_attempt_is_or_that_it_is_overdue(self, staff):
        due_soon = OutboxMessageFactory(next_attempt_at=timezone.now() + timedelta(minutes=10))
        OutboxMessageFactory(conversation=due_soon.conversation, next_attempt_at=timezone.now() - timedelta(hours=2))

        content = staff.get(transcript_url(due_soon.conversation)).content.decode()

        assert "next attempt in 9\xa0minutes" in content or "next attempt in 10\xa0minutes" in content
        assert "overdue by 2\xa0hours" in content

    def test_html_email_is_sanitised_with_its_source_alongside(self, staff):
        hostile = '<p onclick="steal()">Hi <b>there</b></p><script>alert(1)</script><a href="javascript:x()">x</a>'
        message = MessageFactory(
            conversation=ConversationFactory(channel="email", participant_a="a@x.com", participant_b="b@y.com"),
            type="email",
            from_address="a@x.com",
            to_address="b@y.com",
            body=hostile,
            attachments=["https://files.example.com/invoice.pdf"],
        )

        content = staff.get(transcript_url(message.conversation)).content.decode()

        assert "<b>there</b>" in content, "the e-mail is rendered as HTML"
        assert "<script>alert(1)</script>" not in content
        assert "<p onclick" not in content
        assert 'onclick="' not in content
        assert 'href="javascript' not in content
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content, "the source is shown escaped"
        assert 'href="https://files.example.com/invoice.pdf"' in content

    def test_opening_does_not_mark_read_and_the_button_does(self, staff):
        conversation = thread(3)

        staff.get(transcript_url(conversation))
        conversation.refresh_from_db()
        assert conversation.unread_count == 3

        staff.post(reverse("admin:conversations_conversation_state", args=[conversation.pk, "read"]))
        conversation.refresh_from_db()
        assert conversation.unread_count == 0
        assert conversation.last_read_at is not None

    def test_a_1000_message_thread_takes_the_same_few_queries(self, staff):
        small, large = thread(5), thread(1000)
        staff.get(transcript_url(small))  # warm the session and permission caches

        with CaptureQueriesContext(connection) as few:
            assert staff.get(transcript_url(small)).status_code == 200
        with CaptureQueriesContext(connection) as many:
            assert staff.get(transcript_url(large)).status_code == 200

        assert len(many) == len(few)
        assert len(many) <= 8


class TestReply:
    def form_key(self, staff, conversation):
        content = staff.get(transcript_url(conversation)).content.decode()
        return re.search(r'name="idempotency_key" value="([^"]+)"', content).group(1)

    def test_sends_through_the_send_service_and_shows_in_the_thread(self, staff, api):
        conversation = sent_conversation(api)
        key = self.form_key(staff, conversation)

        response = staff.post(
            reverse("admin:conversations_conversation_reply", args=[conversation.pk]),
            {"body": "Happy to help!", "attachments": "", "idempotency_key": key},
            follow=True,
        )

        reply = Message.objects.get(body="Happy to help!")
        assert reply.direction == "outbound"
        assert reply.status == "sent"
        assert reply.provider_message_id
        assert (reply.from_address, reply.to_address) == ("+12016661234", "+18045551234")
        assert "Happy to help!" in response.content.decode()

    def test_a_double_submit_sends_once(self, staff, api):
        conversation = sent_conversation(api)
        key = self.form_key(staff, conversation)
        url = reverse("admin:conversations_conversation_reply", args=[conversation.pk])
        data = {"body": "Once only", "attachments": "", "idempotency_key": key}

        staff.post(url, data)
        response = staff.post(url, data, follow=True)

        assert Message.objects.filter(body="Once only").count() == 1
        assert "submitted twice" in response.content.decode()

    def test_each_rendered_form_has_its_own_key(self, staff, api):
        conversation = sent_conversation(api)

        assert self.form_key(staff, conversation) != self.form_key(staff, conversation)

    def test_an_invalid_reply_is_refused_with_the_reason(self, staff, api):
        conversation = sent_conversation(api)
        url = reverse("admin:conversations_conversation_reply", args=[conversation.pk])

        response = staff.post(url, {"body": "   ", "attachments": "", "idempotency_key": str(uuid.uuid4())})

        assert response.status_code == 400
        assert "Must not be blank" in response.content.decode()
        assert Message.objects.count() == 1

    def test_a_provider_rejection_is_shown(self, staff, api):
        conversation = sent_conversation(api)
        url = reverse("admin:conversations_conversation_reply", args=[conversation.pk])

        response = staff.post(
            url,
            {"body": "x", "attachments": "not a url", "idempotency_key": str(uuid.uuid4())},
        )

        assert response.status_code == 400
        assert "attachments" in response.content.decode()


class TestStateActions:
    @pytest.mark.parametrize(
        ("action", "field", "expected"),
        [("close", "status", "closed"), ("archive", "archived_at", "set")],
    )
    def test_buttons_change_the_conversation(self, staff, action, field, expected):
        conversation = ConversationFactory()

        staff.post(reverse("admin:conversations_conversation_state", args=[conversation.pk, action]))

        conversation.refresh_from_db()
        value = getattr(conversation, field)
        assert (value is not None) if expected == "set" else value == expected

    def test_get_is_refused(self, staff):
        conversation = ConversationFactory()

        response = staff.get(reverse("admin:conversations_conversation_state", args=[conversation.pk, "close"]))

        assert response.status_code == 405

    def test_bulk_mark_read(self, staff):
        first, second = ConversationFactory(unread_count=2), ConversationFactory(unread_count=5)

        staff.post(
            reverse("admin:conversations_conversation_changelist"),
            {"action": "mark_read", "_selected_action": [first.pk, second.pk]},
        )

        assert list(Conversation.objects.values_list("unread_count", flat=True)) == [0, 0]


class TestRetryAndReplay:
    def test_retry_now_on_a_failed_message_page_sends_it_again(self, staff, api):
        response = api.post("/api/messages/sms", payloads.sms(_forceError={"code": 503, "times": 1}), format="json")
        message = Message.objects.get(pk=response.json()["id"])
        assert message.status == "pending"
        page = staff.get(reverse("admin:messaging_message_change", args=[message.pk])).content.decode()
        assert "Retry now" in page

        answer = staff.post(reverse("admin:messaging_message_retry", args=[message.pk]), follow=True)

        message.refresh_from_db()
        assert message.status == "sent"
        assert f"#{message.pk} sent" in answer.content.decode()

    def test_replay_on_an_event_page_says_why_nothing_changed(self, staff):
        event = WebhookEvent.objects.create(
            provider="twilio", kind="inbound", event_id="m-1", outcome="processed", body="{}"
        )

        answer = staff.post(reverse("admin:webhooks_webhookevent_replay", args=[event.pk]), follow=True)

        assert f"#{event.pk} unchanged, processed: already processed; nothing to do" in answer.content.decode()

    def test_replay_action_reports_each_unchanged_event(self, staff):
        rejected = WebhookEvent.objects.create(
            provider="twilio",
            kind="inbound",
            outcome="rejected",
            body="{}",
            error="invalid_signature: bad",
            rejection_code="invalid_signature",
        )
        orphan = WebhookEvent.objects.create(
            provider="twilio",
            kind="status",
            event_id="SMx:delivered",
            outcome="orphan",
            content_type="application/json",
            body='{"MessageSid": "SMx", "MessageStatus": "delivered"}',
        )

        answer = staff.post(
            reverse("admin:webhooks_webhookevent_changelist"),
            {"action": "replay", "_selected_action": [rejected.pk, orphan.pk]},
            follow=True,
        )

        content = answer.content.decode()
        assert f"#{rejected.pk} unchanged, rejected: signature was invalid; never replayed" in content
        assert f"#{orphan.pk} unchanged, orphan: message still not known" in content


class TestLists:
    def test_conversations_hide_archived_by_default(self, staff):
        visible, archived = ConversationFactory(), ConversationFactory(archived_at=T0)
        url = reverse("admin:conversations_conversation_changelist")

        assert {c.pk for c in staff.get(url).context["cl"].result_list} == {visible.pk}
        assert {c.pk for c in staff.get(url, {"archived": "yes"}).context["cl"].result_list} == {archived.pk}
        assert staff.get(url, {"archived": "all"}).context["cl"].result_count == 2

    def test_unread_and_awaiting_reply_filters(self, staff):
        unread = ConversationFactory(unread_count=1, last_message_direction="inbound")
        ConversationFactory(unread_count=0, last_message_direction="outbound")
        url = reverse("admin:conversations_conversation_changelist")

        assert [c.pk for c in staff.get(url, {"unread": "yes"}).context["cl"].result_list] == [unread.pk]
        assert [c.pk for c in staff.get(url, {"awaiting": "yes"}).context["cl"].result_list] == [unread.pk]

    def test_overdue_pending_filter(self, staff):
        overdue = OutboxMessageFactory(next_attempt_at=timezone.now() - timedelta(hours=1))
        OutboxMessageFactory(next_attempt_at=timezone.now() + timedelta(minutes=5))

        messages = staff.get(reverse("admin:messaging_message_changelist"), {"overdue": "yes"})
        conversations = staff.get(reverse("admin:conversations_conversation_changelist"), {"overdue": "yes"})

        assert [m.pk for m in messages.context["cl"].result_list] == [overdue.pk]
        assert [c.pk for c in conversations.context["cl"].result_list] == [overdue.conversation_id]

    def test_channel_filter_offers_every_channel_of_the_model(self, staff):
        content = staff.get(reverse("admin:conversations_conversation_changelist")).content.decode()

        for value, _ in Conversation._meta.get_field("channel").choices:
            assert f"?channel={value}" in content

    @pytest.mark.parametrize("term", ["(415) 555-0199", "415.555.0199", "5550199"])
    def test_one_contact_search_for_conversations_and_messages(self, staff, term):
        wanted = MessageFactory(conversation=ConversationFactory(participant_a="+14155550199"))
        MessageFactory(conversation=ConversationFactory(participant_a="+14155550100"))

        conversations = staff.get(reverse("admin:conversations_conversation_changelist"), {"q": term})
        messages = staff.get(reverse("admin:messaging_message_changelist"), {"q": term})

        assert [c.pk for c in conversations.context["cl"].result_list] == [wanted.conversation_id]
        assert [m.pk for m in messages.context["cl"].result_list] == [wanted.pk]

    def test_email_search_ignores_case_and_text_search_finds_words(self, staff):
        email = ConversationFactory(channel="email", participant_a="jane@example.com", participant_b="s@shop.com")
        words = MessageFactory(body="The parcel was damaged in transit")
        url = reverse("admin:conversations_conversation_changelist")

        assert [c.pk for c in staff.get(url, {"q": "JANE@Example.COM"}).context["cl"].result_list] == [email.pk]
        assert [c.pk for c in staff.get(url, {"q": "damaged parcel"}).context["cl"].result_list] == [
            words.conversation_id
        ]

    def test_message_list_shows_badge_and_short_error(self, staff):
        MessageFactory(direction="outbound", status="failed", last_error={"code": 21211, "message": "Invalid 'To'"})

        content = staff.get(reverse("admin:messaging_message_changelist")).content.decode()

        assert "bo-status-failed" in content
        assert "21211: Invalid &#x27;To&#x27;" in content

    @pytest.mark.parametrize(
        "url_name",
        [
            "admin:conversations_conversation_changelist",
            "admin:messaging_message_changelist",
            "admin:messaging_failedmessage_changelist",
            "admin:webhooks_webhookevent_changelist",
        ],
    )
    def test_list_pages_take_the_same_queries_for_5_or_60_rows(self, staff, url_name):
        def rows(count):
            for _ in range(count):
                message = MessageFactory(direction="outbound", status="failed", last_error={"code": 1, "message": "x"})
                WebhookEvent.objects.create(
                    provider="twilio", kind="status", event_id=f"e-{message.pk}", outcome="processed", message=message
                )

        rows(5)
        staff.get(reverse(url_name))
        with CaptureQueriesContext(connection) as few:
            staff.get(reverse(url_name))
        rows(55)
        with CaptureQueriesContext(connection) as many:
            response = staff.get(reverse(url_name))

        assert response.status_code == 200
        assert len(many) == len(few)


class TestDashboard:
    def test_counts_link_to_their_filtered_lists(self, staff):
        ConversationFactory(unread_count=2, last_message_direction="inbound")
        ConversationFactory(archived_at=T0, unread_count=9)
        OutboxMessageFactory(next_attempt_at=timezone.now() - timedelta(hours=1))
        MessageFactory(direction="outbound", status="failed")
        WebhookEvent.objects.create(provider="twilio", kind="inbound", outcome="rejected")

        content = staff.get(reverse("admin:index")).content.decode()

        cards = dict(
            (label, int(count))
            for count, label in re.findall(
                r'<span class="bo-count">(\d+)</span><span class="bo-label">([^<]+)<', content
            )
        )
        assert cards == {
            "Open conversations": 3,
            "Unread": 1,
            "Awaiting reply": 1,
            "Pending, overdue": 1,
            "Failed, last 24 h": 1,
            "Rejected webhooks, last 24 h": 1,
        }
        assert "?unread=yes" in content
        assert "?overdue=yes" in content
        assert "?recent=24h" in content

    def test_chart_is_inline_svg_with_the_last_48_hours(self, staff):
        MessageFactory(timestamp=timezone.now() - timedelta(hours=1))
        MessageFactory(timestamp=timezone.now() - timedelta(hours=60))

        content = staff.get(reverse("admin:index")).content.decode()

        assert "<svg" in content
        assert "last 48 hours: 1 in all" in content
        assert all(src.startswith("/static/") for src in re.findall(r'<script[^>]* src="([^"]+)"', content))
        assert all(href.startswith("/static/") for href in re.findall(r'<link[^>]* href="([^"]+)"', content))

    def test_view_site_is_not_a_json_404(self, staff):
        content = staff.get(reverse("admin:index")).content.decode()
        site_url = re.search(r'<a href="([^"]+)">View site</a>', content).group(1)

        assert staff.get(site_url).status_code == 200

    def test_a_viewer_without_change_rights_cannot_reply_or_act(self, client):
        user = User.objects.create_user("viewer", password="pw", is_staff=True)
        from django.contrib.auth.models import Permission

        user.user_permissions.add(Permission.objects.get(codename="view_conversation"))
        client.force_login(user)
        conversation = thread(2)

        page = client.get(transcript_url(conversation))
        action = client.post(reverse("admin:conversations_conversation_state", args=[conversation.pk, "close"]))

        assert page.status_code == 200
        assert "bo-reply" not in page.content.decode()
        assert action.status_code == 403
