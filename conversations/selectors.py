"""Reads of conversations for the inbox."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from conversations.addresses import looks_like_email, normalise_email, normalise_phone
from conversations.models import Conversation
from core.ids import get_by_id


def conversation_get(*, conversation_id: int | str) -> Conversation:
    return get_by_id(Conversation.objects.all(), conversation_id, label="Conversation")


def conversation_list(
    *, channel: str | None = None, status: str | None = None, participant: str | None = None
) -> QuerySet[Conversation]:
    """Newest activity first; conversations without messages last."""
    queryset = Conversation.objects.all()
    if channel:
        queryset = queryset.filter(channel=channel)
    if status:
        queryset = queryset.filter(status=status)
    if participant:
        if looks_like_email(participant):
            address = normalise_email(participant, field="participant")
        else:
            address = normalise_phone(participant, field="participant")
        queryset = queryset.filter(Q(participant_a=address) | Q(participant_b=address))
    return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")
