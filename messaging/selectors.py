"""Reads of messages."""

from __future__ import annotations

from django.db.models import QuerySet

from conversations.selectors import conversation_get
from core.errors import NotFound
from core.ids import parse_id
from messaging.models import Message


def message_get(*, message_id: int | str) -> Message:
    message = Message.objects.filter(pk=parse_id(message_id)).first()
    if message is None:
        raise NotFound(f"Message {message_id} does not exist.")
    return message


def message_list_for_conversation(*, conversation_id: int | str, order: str = "desc") -> QuerySet[Message]:
    """A thread's messages by timestamp (ties by id). 404 when the conversation does not exist."""
    conversation = conversation_get(conversation_id=conversation_id)
    ordering = ["timestamp", "id"] if order == "asc" else ["-timestamp", "-id"]
    return Message.objects.filter(conversation=conversation).order_by(*ordering)
