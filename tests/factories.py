import factory
from django.db.models import F
from django.utils import timezone

from conversations.models import Conversation
from messaging.models import Direction, Message, MessageStatus, MessageType


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    channel = "sms"
    participant_a = factory.Sequence(lambda n: f"+1201555{n:04d}")
    participant_b = "+18045551234"


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    channel = factory.SelfAttribute("conversation.channel")
    direction = Direction.INBOUND
    type = MessageType.SMS
    from_address = factory.SelfAttribute("conversation.participant_a")
    to_address = factory.SelfAttribute("conversation.participant_b")
    body = factory.Faker("sentence")
    status = MessageStatus.RECEIVED
    provider = "twilio"
    provider_message_id = factory.Sequence(lambda n: f"SM{n:032x}")
    timestamp = factory.LazyFunction(timezone.now)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # The service counts every message into its conversation in the statement that stores it, and
        # thread pages read their total from that count; messages made here are counted the same way.
        message = super()._create(model_class, *args, **kwargs)
        Conversation.objects.filter(pk=message.conversation_id).update(message_count=F("message_count") + 1)
        message.conversation.message_count += 1
        return message


class OutboxMessageFactory(MessageFactory):
    """An outbound message waiting in the outbox, due now."""

    direction = Direction.OUTBOUND
    status = MessageStatus.PENDING
    provider_message_id = None
    next_attempt_at = factory.LazyFunction(timezone.now)
