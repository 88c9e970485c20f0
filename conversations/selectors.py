"""Reads of conversations for the inbox."""

from __future__ import annotations

from django.db import connection
from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from conversations.addresses import (
    InvalidAddress,
    looks_like_email,
    normalise_email,
    normalise_phone,
    normalise_scoped_id,
)
from conversations.models import Conversation, ConversationTally
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
        addresses = _participant_addresses(participant)
        queryset = queryset.filter(Q(participant_a__in=addresses) | Q(participant_b__in=addresses))
    if unread is not None:
        queryset = queryset.filter(unread_count__gt=0) if unread else queryset.filter(unread_count=0)
    if archived is not None:
        queryset = queryset.filter(archived_at__isnull=not archived)
    if q and q.strip():
        queryset = conversation_search(queryset, q)
    return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")


def conversation_list_total(
    *,
    channel: str | None = None,
    status: str | None = None,
    participant: str | None = None,
    unread: bool | None = None,
    archived: bool | None = False,
    q: str | None = None,
) -> int | None:
    """How many conversations ``conversation_list`` with these filters holds, read from the tally the
    database keeps (ConversationTally) when the filters are the tally's keys; None when the rows have
    to be counted (other filters, or no tally on this database)."""
    if participant or unread is not None or (q and q.strip()) or connection.vendor != "postgresql":
        return None
    tally = ConversationTally.objects.all()
    if channel:
        tally = tally.filter(channel=channel)
    if status:
        tally = tally.filter(status=status)
    if archived is not None:
        tally = tally.filter(archived=archived)
    return tally.aggregate(total=Coalesce(Sum("count"), 0))["total"]


def _participant_addresses(raw: str) -> set[str]:
    """Every form a participant filter can stand for: an e-mail address (any case), a phone number in
    any spelling, or a WhatsApp/Instagram user id as given. 400 when it is none of them."""
    if looks_like_email(raw):
        return {normalise_email(raw, field="participant").lower()}
    try:
        return {normalise_phone(raw, field="participant")}
    except InvalidAddress as not_a_phone:
        try:
            return {normalise_scoped_id(raw, field="participant")}
        except InvalidAddress:
            raise not_a_phone from None
