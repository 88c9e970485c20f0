"""Reads of messages."""

from __future__ import annotations

from django.db.models import QuerySet

from conversations.selectors import conversation_get
from core.ids import get_by_id
from messaging.models import Direction, Message
from providers.statuses import canonical_message_id


def message_get(*, message_id: int | str) -> Message:
    return get_by_id(Message.objects.all(), message_id, label="Message")


def message_list_for_conversation(*, conversation_id: int | str, order: str = "desc") -> QuerySet[Message]:
    """A thread's messages by timestamp (ties by id). 404 when the conversation does not exist."""
    conversation = conversation_get(conversation_id=conversation_id)
    ordering = ["timestamp", "id"] if order == "asc" else ["-timestamp", "-id"]
    return Message.objects.filter(conversation=conversation).order_by(*ordering)


def message_find_outbound(*, provider: str, provider_message_id: str) -> Message | None:
    """The outbound message a provider's status event is about, or None if it is not stored (yet)."""
    key = canonical_message_id(provider, provider_message_id)
    messages = Message.objects.filter(direction=Direction.OUTBOUND, provider=provider)
    match = messages.filter(provider_message_id__in={provider_message_id, key}).first()
    if match is None and provider == "sendgrid":
        # Stored as a full sg_message_id with a different ".filter..." tail than the event's.
        match = messages.filter(provider_message_id__startswith=f"{key}.filter").first()
    return match
