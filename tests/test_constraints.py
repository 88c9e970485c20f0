"""The database, not the application, enforces uniqueness and valid states."""

import pytest
from django.db import IntegrityError, transaction

from conversations.models import Conversation
from messaging.models import Message
from tests.factories import ConversationFactory, MessageFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def violates(create):
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_one_conversation_per_channel_and_participant_pair():
    ConversationFactory(channel="sms", participant_a="+1", participant_b="+2")

    violates(lambda: Conversation.objects.create(channel="sms", participant_a="+1", participant_b="+2"))
    Conversation.objects.create(channel="email", participant_a="+1", participant_b="+2")


def test_a_provider_message_id_is_stored_once_per_provider():
    first = MessageFactory(provider="twilio", provider_message_id="SM1")

    violates(lambda: MessageFactory(conversation=first.conversation, provider="twilio", provider_message_id="SM1"))
    MessageFactory(conversation=first.conversation, provider="sendgrid", provider_message_id="SM1")
    MessageFactory(conversation=first.conversation, provider="twilio", provider_message_id=None)
    MessageFactory(conversation=first.conversation, provider="twilio", provider_message_id=None)


def test_a_client_message_id_is_unique_per_channel():
    sms = MessageFactory(client_message_id="key")
    email_thread = ConversationFactory(channel="email")

    violates(lambda: MessageFactory(conversation=sms.conversation, client_message_id="key"))
    MessageFactory(conversation=email_thread, client_message_id="key")
    assert Message.objects.filter(client_message_id="key").count() == 2


def test_only_one_delivery_of_an_event_can_claim_it():
    def event(outcome):
        return WebhookEvent.objects.create(provider="twilio", kind="inbound", event_id="m-1", outcome=outcome)

    event("processed")
    violates(lambda: event("processed"))
    violates(lambda: event("orphan"))
    event("duplicate")
    event("rejected")
    event("error")
    assert WebhookEvent.objects.filter(event_id="m-1").count() == 4


@pytest.mark.parametrize(
    ("model_factory", "field", "value"),
    [
        (MessageFactory, "status", "lost"),
        (MessageFactory, "direction", "sideways"),
        (MessageFactory, "type", "fax"),
        (ConversationFactory, "channel", "pigeon"),
        (ConversationFactory, "status", "maybe"),
    ],
)
def test_enumerations_are_checked_by_the_database(model_factory, field, value):
    violates(lambda: model_factory(**{field: value}))


def test_counters_cannot_go_negative():
    conversation = ConversationFactory()

    violates(lambda: Conversation.objects.filter(pk=conversation.pk).update(unread_count=-1))
