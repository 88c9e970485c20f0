"""The back office in a real browser, as a support agent works it."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Conversation
from messaging.models import Message
from messaging.services import SendCommand, message_send
from tests.factories import ConversationFactory, MessageFactory
from webhooks.demo import seed_demo
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = (
    "<p onclick=\"document.title='owned'\">Hello <b>team</b>,</p><p>Order #4471 arrived broken.</p>"
    "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\">"
    "<a href=\"javascript:document.title='owned'\">photos</a>"
)


def email_thread():
    conversation = ConversationFactory(
        channel="email", participant_a="dana.reyes@example.com", participant_b="support@usehatchapp.com"
    )
    now = timezone.now()
    MessageFactory(
        conversation=conversation,
        type="email",
        from_address="Dana.Reyes@Example.com",
        to_address="support@usehatchapp.com",
        provider="sendgrid",
        body=HOSTILE,
        attachments=["https://files.example.com/broken-box.jpg"],
        timestamp=now - timedelta(minutes=30),
    )
    MessageFactory(
        conversation=conversation,
        type="email",
        direction="outbound",
        status="failed",
        from_address="support@usehatchapp.com",
        to_address="Dana.Reyes@Example.com",
        provider="sendgrid",
        provider_message_id=None,
        body="<p>Sorry to hear that! A replacement is on its way.</p>",
        last_error={"code": 550, "message": "Mailbox unavailable"},
        timestamp=now - timedelta(minutes=20),
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        message_count=2, unread_count=1, last_message_at=now - timedelta(minutes=20), last_message_direction="outbound"
    )
    return conversation


def sms_thread():
    outcome = message_send(
        command=SendCommand(
            channel="sms",
            type="sms",
            from_address="+12016661234",
            to_address="+14155550199",
            body="Your order shipped!",
        )
    )
    return outcome.message.conversation


def test_dashboard_counts_and_chart_link_to_lists(signed_in, shoot):
    seed_demo(conversations=40)
    page = signed_in

    page.goto(f"{page.base}/admin/")
    expect(page.locator(".bo-chart svg")).to_be_visible()
    assert page.locator(".bo-chart rect").count() > 10
    shoot(page, "dashboard", full_page=True)

    page.click("text=Awaiting reply")
    expect(page).to_have_url(f"{page.base}/admin/conversations/conversation/?awaiting=yes&status__exact=open")
    expect(page.locator("#result_list")).to_be_visible()


def test_conversation_list_fits_1400px_with_filters(signed_in, shoot):
    seed_demo(conversations=40)
    page = signed_in

    page.goto(f"{page.base}/admin/conversations/conversation/")
    table, content = page.locator("#result_list").bounding_box(), page.locator("#changelist").bounding_box()
    assert table["x"] + table["width"] <= content["x"] + content["width"] + 1, "no column is off-screen"
    expect(page.locator("th.column-status_badge")).to_be_in_viewport()
    shoot(page, "conversations")

    page.locator("#changelist-filter").get_by_role("link", name="Unread", exact=True).click()
    expect(page).to_have_url(re.compile(r"unread=yes"))
    unread = Conversation.objects.filter(unread_count__gt=0, archived_at__isnull=True).count()
    expect(page.locator("#result_list tbody tr")).to_have_count(unread)
    page.locator("#changelist-filter").get_by_role("link", name="Archived", exact=True).click()
    expect(page).to_have_url(re.compile(r"archived=yes"))
    shoot(page, "conversations-unread-archived")


def test_transcript_shows_a_chat_with_sanitised_email_and_does_not_mark_read(signed_in, shoot):
    conversation = email_thread()
    page = signed_in

    page.goto(f"{page.base}/admin/conversations/conversation/{conversation.pk}/change/")

    inbound, outbound = page.locator(".bo-in .bo-bubble").first, page.locator(".bo-out .bo-bubble").first
    assert inbound.bounding_box()["x"] < outbound.bounding_box()["x"], "inbound left, outbound right"
    expect(page.locator(".bo-in .bo-email b")).to_have_text("team")
    expect(page.locator(".bo-out")).to_contain_text("550: Mailbox unavailable")
    expect(page.locator(".bo-attachment")).to_have_attribute("href", "https://files.example.com/broken-box.jpg")
    assert page.title() != "owned", "nothing in the e-mail ran"
    page.locator(".bo-in summary").click()
    expect(page.locator(".bo-in .bo-source pre")).to_contain_text("<script>")
    shoot(page, "transcript")
    conversation.refresh_from_db()
    assert conversation.unread_count == 1, "opening a thread does not mark it read"

    page.click("button:has-text('Mark read')")
    expect(page.locator(".messagelist")).to_contain_text("Marked read")
    conversation.refresh_from_db()
    assert conversation.unread_count == 0


def test_reply_sends_once_and_shows_in_the_thread(signed_in, shoot):
    conversation = sms_thread()
    page = signed_in
    page.goto(f"{page.base}/admin/conversations/conversation/{conversation.pk}/change/")

    page.fill("textarea[name=body]", "Tracking: https://track.example.com/4471")
    page.click("button.bo-send")

    expect(page.locator(".bo-out").last).to_contain_text("Tracking: https://track.example.com/4471")
    expect(page.locator(".messagelist")).to_contain_text("sent")
    assert Message.objects.filter(body__startswith="Tracking:").count() == 1
    shoot(page, "reply")

    # A double click: the same rendered form posted twice at once.
    page.fill("textarea[name=body]", "On its way")
    page.evaluate(
        """async () => {
            const form = document.querySelector("form.bo-reply");
            const data = new FormData(form);
            await Promise.all([1, 2].map(() => fetch(form.action, {method: "POST", body: data, redirect: "manual"})));
        }"""
    )
    page.reload()
    # Both answers race for the one messages cookie, so which notice shows varies; the thread does not.
    expect(page.locator(".bo-out .bo-bubble", has_text="On its way")).to_have_count(1)
    assert Message.objects.filter(body="On its way").count() == 1


def test_retry_now_from_a_failed_message(signed_in, shoot):
    failed = message_send(
        command=SendCommand(
            channel="sms",
            type="sms",
            from_address="+12016661234",
            to_address="+14155550123",
            body="Your code is 1234",
            forced_error=None,
        )
    ).message
    Message.objects.filter(pk=failed.pk).update(status="failed", last_error={"code": 503, "message": "Unavailable"})
    page = signed_in

    page.goto(f"{page.base}/admin/messaging/failedmessage/")
    expect(page.locator("#result_list")).to_contain_text("503: Unavailable")
    shoot(page, "failed-messages")
    page.click(f"#result_list a[href$='/{failed.pk}/change/']")
    # The screenshot waits for the message's page, not the list it is leaving (a capture during the
    # navigation fails).
    expect(page).to_have_url(re.compile(rf"/failedmessage/{failed.pk}/change/$"))
    expect(page.locator("button:has-text('Retry now')")).to_be_visible()
    shoot(page, "message")
    page.click("button:has-text('Retry now')")

    expect(page.locator(".messagelist")).to_contain_text(f"#{failed.pk} sent")
    failed.refresh_from_db()
    assert failed.status == "sent"


def test_replay_tells_why_an_event_is_unchanged(signed_in, shoot):
    event = WebhookEvent.objects.create(
        provider="twilio",
        kind="status",
        event_id="SM404:delivered",
        outcome="orphan",
        content_type="application/json",
        body='{"MessageSid": "SM404", "MessageStatus": "delivered"}',
    )
    page = signed_in

    page.goto(f"{page.base}/admin/webhooks/webhookevent/")
    expect(page.locator("#result_list tbody tr").first.locator("td").nth(1)).to_contain_text("orphan")
    shoot(page, "webhook-events")
    page.goto(f"{page.base}/admin/webhooks/webhookevent/{event.pk}/change/")
    page.click("button:has-text('Replay')")

    expect(page.locator(".messagelist")).to_contain_text(f"#{event.pk} unchanged, orphan: message still not known")
    shoot(page, "webhook-event-replayed")


def test_search_finds_a_contact_by_any_spelling(signed_in, shoot):
    conversation = sms_thread()
    email = email_thread()
    page = signed_in

    for term, expected in [
        ("(415) 555-0199", conversation),
        ("5550199", conversation),
        ("DANA.REYES@example.COM", email),
    ]:
        page.goto(f"{page.base}/admin/conversations/conversation/")
        page.fill("#searchbar", term)
        page.press("#searchbar", "Enter")
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first.locator("a").first).to_have_attribute(
            "href", re.compile(rf"/admin/conversations/conversation/{expected.pk}/change/")
        )
    page.goto(f"{page.base}/admin/messaging/message/?q=broken")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    shoot(page, "message-search")
