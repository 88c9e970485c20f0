"""Reads of conversations for the inbox."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from conversations.addresses import looks_like_email, normalise_email, normalise_phone
from conversations.models import Conversation
from conversations.search import conversation_search
from core.ids import get_by_id


def conversation_get(*, conversation_id: int | str) -> Conversation:
    return get_by_id(Conversation.objects.all(), conversation_id, label="Conversation")


def conversation_list(
    *,
    channel: str | None = None,
    status: str | None = None,
    participant: str | None = None,
    unread: bool | None = None,
    archived: bool | None = False,
    q: str | None = None,
) -> QuerySet[Conversation]:
    """Newest activity first; conversations without messages last.

    ``archived`` False (the default) hides archived threads, True shows only them, None shows both.
    ``q`` is the contact search (any spelling of a number, an address in any case) or full text.
    """
    queryset = Conversation.objects.all()
    if channel:
        queryset = queryset.filter(channel=channel)
    if status:
        queryset = queryset.filter(status=status)
    if participant:
        if looks_like_email(participant):
            address = normalise_email(participant, field="participant").lower()
        else:
            address = normalise_phone(participant, field="participant")
        queryset = queryset.filter(Q(participant_a=address) | Q(participant_b=address))
    if unread is not None:
        queryset = queryset.filter(unread_count__gt=0) if unread else queryset.filter(unread_count=0)
    if archived is not None:
        queryset = queryset.filter(archived_at__isnull=not archived)
    if q and q.strip():
        queryset = conversation_search(queryset, q)
    return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")
