"""Reads of messages."""

from __future__ import annotations

from django.db.models import QuerySet

from conversations.selectors import conversation_get
from core.ids import get_by_id
from messaging.models import Direction, Message
from providers.registry import provider_by_stored_name


def message_get(*, message_id: int | str) -> Message:
    return get_by_id(Message.objects.all(), message_id, label="Message")


def message_list_for_conversation(*, conversation_id: int | str, order: str = "desc") -> QuerySet[Message]:
    """A thread's messages by timestamp (ties by id). 404 when the conversation does not exist."""
    conversation = conversation_get(conversation_id=conversation_id)
    ordering = ["timestamp", "id"] if order == "asc" else ["-timestamp", "-id"]
    return Message.objects.filter(conversation=conversation).order_by(*ordering)


def message_find_outbound(*, provider: str, provider_message_id: str) -> Message | None:
    """The outbound message a provider's status event is about, or None if it is not stored (yet)."""
    adapter = provider_by_stored_name(provider)
    key = adapter.canonical_message_id(provider_message_id)
    messages = Message.objects.filter(direction=Direction.OUTBOUND, provider=provider)
    match = messages.filter(provider_message_id__in={provider_message_id, key}).first()
    prefix = adapter.message_id_prefix(provider_message_id)
    if match is None and prefix:
        # Stored with another suffix than the event's (SendGrid's ".filter..." tails).
        match = messages.filter(provider_message_id__startswith=prefix).first()
    return match
