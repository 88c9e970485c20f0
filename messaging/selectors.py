"""Reads of messages."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from django.db import connection
from django.db.models import Q

from conversations.selectors import conversation_get
from core.errors import NotFound
from core.ids import get_by_id, parse_id
from core.pagination import LazyCount, PageRequest, page_total
from core.prepared import model_columns, prepared_models
from messaging.models import Direction, Message
from providers.registry import provider_by_stored_name


def message_get(*, message_id: int | str) -> Message:
    return get_by_id(Message.objects.all(), message_id, label="Message")


def message_thread_page(*, conversation_id: int | str, order: str, page: PageRequest) -> tuple[list[Message], int]:
    """Page ``page`` of a thread's messages by timestamp (ties by id) and the thread's total; 404 when
    the conversation does not exist. The page is read first: when it holds rows but is not full (most
    threads fit on one page), it proves the conversation exists and gives the total, and nothing else
    is read. Otherwise the conversation is read for its ``message_count`` (see ``page_total``)."""
    pk = parse_id(conversation_id)
    if pk is None:
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    messages = message_thread_rows(conversation_id=pk, order=order, page=page)
    if messages and len(messages) < page.limit:
        return messages, page.offset + len(messages)
    conversation = conversation_get(conversation_id=pk)
    thread = LazyCount(lambda: Message.objects.filter(conversation_id=pk))
    return messages, page_total(thread, page, messages, kept=conversation.message_count)


def message_thread_rows(*, conversation_id: int, order: str, page: PageRequest) -> list[Message]:
    """Page ``page`` of a conversation's messages by timestamp (ties by id), ``order`` "asc" or "desc",
    as one prepared statement: building the ORM's query for every thread page cost more CPU than the
    read itself."""
    return prepared_models(Message, _thread_sql(order), [conversation_id, page.limit, page.offset])


@functools.cache
def _thread_sql(order: str) -> str:
    direction = "ASC" if order == "asc" else "DESC"
    quote = connection.ops.quote_name
    return (
        f"SELECT {model_columns(Message)} FROM {quote(Message._meta.db_table)} WHERE {quote('conversation_id')} = %s"
        f" ORDER BY {quote('timestamp')} {direction}, {quote('id')} {direction} LIMIT %s OFFSET %s"
    )


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


#: How many prefixes one query looks for on databases without LIKE ANY (the SQLite fallback).
_PREFIXES_PER_QUERY = 200


def message_find_outbound_many(*, provider: str, provider_message_ids: Iterable[str]) -> dict[str, int]:
    """``message_find_outbound`` for many ids at once: the id of the stored outbound message each
    provider message id names, for those that are stored. Two queries whatever the count: the exact
    matches, then the ids still missing that the provider matches by prefix."""
    adapter = provider_by_stored_name(provider)
    wanted = set(provider_message_ids)
    keys = {provider_message_id: adapter.canonical_message_id(provider_message_id) for provider_message_id in wanted}
    stored = _outbound_ids_exact(provider, wanted | set(keys.values()))
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
    if prefixes:
        matches = _outbound_ids_by_prefix(provider, set(prefixes.values()))
        for provider_message_id, prefix in prefixes.items():
            pk = next((pk for stored_id, pk in matches if stored_id.startswith(prefix)), None)
            if pk is not None:
                found[provider_message_id] = pk
    return found


def _outbound_ids_exact(provider: str, ids: set[str]) -> dict[str, int]:
    if connection.vendor != "postgresql":
        messages = Message.objects.filter(direction=Direction.OUTBOUND, provider=provider)
        rows = messages.filter(provider_message_id__in=ids).values_list("provider_message_id", "pk")
        return {stored_id: pk for stored_id, pk in rows if stored_id}
    # One array parameter rather than thousands of placeholders: the query is built in microseconds.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT provider_message_id, id FROM {Message._meta.db_table} "
            "WHERE direction = %s AND provider = %s AND provider_message_id = ANY(%s)",
            [Direction.OUTBOUND, provider, list(ids)],
        )
        return dict(cursor.fetchall())


def _outbound_ids_by_prefix(provider: str, prefixes: set[str]) -> list[tuple[str, int]]:
    """(stored id, message id) of the outbound messages whose id starts with one of ``prefixes``;
    served by message_outbound_id_prefix_idx on PostgreSQL."""
    if connection.vendor != "postgresql":
        messages = Message.objects.filter(direction=Direction.OUTBOUND, provider=provider)
        ordered, rows = sorted(prefixes), []
        for start in range(0, len(ordered), _PREFIXES_PER_QUERY):
            condition = Q()
            for prefix in ordered[start : start + _PREFIXES_PER_QUERY]:
                condition |= Q(provider_message_id__startswith=prefix)
            rows += [
                (stored_id or "", pk)
                for stored_id, pk in messages.filter(condition).values_list("provider_message_id", "pk")
            ]
        return rows
    patterns = [_like_escape(prefix) + "%" for prefix in prefixes]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT provider_message_id, id FROM {Message._meta.db_table} "
            "WHERE direction = %s AND provider = %s AND provider_message_id IS NOT NULL "
            "AND provider_message_id LIKE ANY(%s)",
            [Direction.OUTBOUND, provider, patterns],
        )
        return list(cursor.fetchall())


def _like_escape(text: str) -> str:
    """``text`` matched literally by LIKE (backslash is PostgreSQL's default escape character)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
