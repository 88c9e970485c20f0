from io import StringIO

import pytest
from django.core.management import call_command

from conversations.models import Conversation
from messaging.models import Message
from webhooks.demo import channels
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def seed(count):
    out = StringIO()
    call_command("seed_demo", conversations=count, stdout=out)
    return out.getvalue()


def test_makes_a_living_inbox_on_every_channel():
    output = seed(30)

    assert "[##############################] 30/30" in output
    assert "Made 30 conversation(s)" in output
    assert set(Conversation.objects.values_list("channel", flat=True)) == set(channels())
    statuses = set(Message.objects.values_list("status", flat=True))
    assert {"received", "delivered", "failed", "pending"} <= statuses
    assert Message.objects.filter(status="failed", last_error__isnull=False).exists()
    assert WebhookEvent.objects.filter(outcome="rejected").exists()
    assert WebhookEvent.objects.filter(outcome="processed", message__isnull=False).exists()
    assert Conversation.objects.filter(unread_count__gt=0).exists()
    assert Conversation.objects.filter(last_message_direction="inbound").exists()
    for conversation in Conversation.objects.all():
        assert conversation.message_count == conversation.messages.count()


def test_is_idempotent():
    seed(12)
    counts = (Conversation.objects.count(), Message.objects.count(), WebhookEvent.objects.count())

    output = seed(12)

    assert "Made 0 conversation(s); 12 already existed." in output
    assert (Conversation.objects.count(), Message.objects.count(), WebhookEvent.objects.count()) == counts


def test_e_mail_capitals_thread_with_the_rest():
    seed(30)

    for address in Conversation.objects.filter(channel="email").values_list("participant_a", "participant_b"):
        assert all(part == part.lower() for part in address)
