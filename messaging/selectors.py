"""Reads of messages."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

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


#: How many prefixes one query looks for (SendGrid ids stored with another ``.filter`` tail).
_PREFIXES_PER_QUERY = 200


def message_find_outbound_many(*, provider: str, provider_message_ids: Iterable[str]) -> dict[str, int]:
    """``message_find_outbound`` for many ids at once: the id of the stored outbound message each
    provider message id names, for those that are stored; a query for all exact matches, then one per
    200 ids still missing that the provider matches by prefix."""
    adapter = provider_by_stored_name(provider)
    wanted = set(provider_message_ids)
    keys = {provider_message_id: adapter.canonical_message_id(provider_message_id) for provider_message_id in wanted}
    messages = Message.objects.filter(direction=Direction.OUTBOUND, provider=provider)
    stored = dict(
        messages.filter(provider_message_id__in=wanted | set(keys.values())).values_list("provider_message_id", "pk")
    )
    found = {}
    for provider_message_id in wanted:
        pk = stored.get(provider_message_id) or stored.get(keys[provider_message_id])
        if pk is not None:
            found[provider_message_id] = pk
    prefixes = {
        provider_message_id: prefix
        for provider_message_id in wanted - set(found)
        if (prefix := adapter.message_id_prefix(provider_message_id))
    }
    missing = sorted(prefixes)
    for start in range(0, len(missing), _PREFIXES_PER_QUERY):
        chunk = missing[start : start + _PREFIXES_PER_QUERY]
        condition = Q()
        for provider_message_id in chunk:
            condition |= Q(provider_message_id__startswith=prefixes[provider_message_id])
        for stored_id, pk in messages.filter(condition).values_list("provider_message_id", "pk"):
            for provider_message_id in chunk:
                if stored_id and stored_id.startswith(prefixes[provider_message_id]):
                    found.setdefault(provider_message_id, pk)
    return found
