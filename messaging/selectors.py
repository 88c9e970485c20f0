"""Reads of messages."""

from __future__ import annotations

from django.db.models import QuerySet

from conversations.selectors import conversation_get
from core.ids import get_by_id
from messaging.models import Message


def message_get(*, message_id: int | str) -> Message:
    return get_by_id(Message.objects.all(), message_id, label="Message")


def message_list_for_conversation(*, conversation_id: int | str, order: str = "desc") -> QuerySet[Message]:
    """A thread's messages by timestamp (ties by id). 404 when the conversation does not exist."""
    conversation = conversation_get(conversation_id=conversation_id)
    ordering = ["timestamp", "id"] if order == "asc" else ["-timestamp", "-id"]
    return Message.objects.filter(conversation=conversation).order_by(*ordering)
