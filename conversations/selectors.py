"""Reads of conversations for the inbox."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Q, QuerySet

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
from core.pagination import LazyCount, PageRequest, page_total
from core.prepared import model_columns, prepared_cursor, prepared_models, prepared_models_and_value


def conversation_get(*, conversation_id: int | str) -> Conversation:
    return get_by_id(Conversation.objects.all(), conversation_id, label="Conversation")


@dataclass(frozen=True)
class InboxFilters:
    """The inbox's filters. ``archived`` False (the default) hides archived threads, True shows only
    them, None shows both. ``q`` is the contact search (any spelling of a number, an address in any
    case) or full text."""

    channel: str | None = None
    status: str | None = None
    participant: str | None = None
    unread: bool | None = None
    archived: bool | None = False
    q: str | None = None

    @property
    def tally_keys_only(self) -> bool:
        """Whether only the tally's keys (channel, status, archived) filter."""
        return not self.participant and self.unread is None and not (self.q and self.q.strip())


def conversation_list(filters: InboxFilters = InboxFilters()) -> QuerySet[Conversation]:
    """Newest activity first; conversations without messages last."""
    queryset = Conversation.objects.all()
    if filters.channel:
        queryset = queryset.filter(channel=filters.channel)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.participant:
        addresses = _participant_addresses(filters.participant)
        queryset = queryset.filter(Q(participant_a__in=addresses) | Q(participant_b__in=addresses))
    if filters.unread is not None:
        queryset = queryset.filter(unread_count__gt=0) if filters.unread else queryset.filter(unread_count=0)
    if filters.archived is not None:
        queryset = queryset.filter(archived_at__isnull=not filters.archived)
    if filters.q and filters.q.strip():
        queryset = conversation_search(queryset, filters.q)
    return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")


#: The filters ``conversation_list_page`` writes out itself; any other filter set goes through the ORM.
_PLAIN_FILTERS = frozenset({"channel", "status", "unread", "archived"})


def conversation_list_page(*, filters: InboxFilters, page: PageRequest) -> tuple[list[Conversation], int]:
    """Page ``page`` of ``conversation_list(filters)`` and the list's total (see ``page_total``). On
    PostgreSQL, filtered by nothing but channel, status, unread and archived, the page is one prepared
    statement: an inbox page cost more CPU in building the ORM query than in reading it. When the
    tally can answer the total (no unread filter), the same statement reads it: one round trip, and
    the page and its total from one snapshot."""
    others_set = any(
        getattr(filters, field.name) not in (None, "")
        for field in dataclasses.fields(filters)
        if field.name not in _PLAIN_FILTERS
    )
    if others_set or connection.vendor != "postgresql":
        queryset = conversation_list(filters)
        items = list(queryset[page.offset : page.offset + page.limit])
        return items, page_total(queryset, page, items, kept=lambda: conversation_list_total(filters))
    conditions, params = _plain_conditions(filters)
    rows = LazyCount(lambda: conversation_list(filters))
    if not filters.tally_keys_only:
        items = prepared_models(Conversation, _plain_page_sql(conditions), [*params, page.limit, page.offset])
        return items, page_total(rows, page, items)
    tally_conditions, tally_params = _tally_conditions(filters)
    items, kept = prepared_models_and_value(
        Conversation,
        _plain_page_and_total_sql(conditions, tally_conditions),
        [*tally_params, *params, page.limit, page.offset],
    )
    return items, page_total(rows, page, items, kept=kept)


def _plain_conditions(filters: InboxFilters) -> tuple[tuple[str, ...], list[object]]:
    """The WHERE conditions (and their parameters) ``conversation_list`` applies for the filters other
    than a participant and a search."""
    conditions: list[str] = []
    params: list[object] = []
    if filters.channel:
        conditions.append('"channel" = %s')
        params.append(filters.channel)
    if filters.status:
        conditions.append('"status" = %s')
        params.append(filters.status)
    if filters.unread is not None:
        conditions.append('"unread_count" > 0' if filters.unread else '"unread_count" = 0')
    if filters.archived is not None:
        conditions.append('"archived_at" IS NOT NULL' if filters.archived else '"archived_at" IS NULL')
    return tuple(conditions), params


@functools.cache
def _plain_page_sql(conditions: tuple[str, ...]) -> str:
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    quote = connection.ops.quote_name
    return (
        f"SELECT {model_columns(Conversation)} FROM {quote(Conversation._meta.db_table)}{where}"
        f" ORDER BY {_page_order()} LIMIT %s OFFSET %s"
    )


def _page_order(alias: str = "") -> str:
    """The inbox's order (``conversation_list``'s), its columns qualified by ``alias`` if one is given."""
    quote = connection.ops.quote_name
    prefix = f"{alias}." if alias else ""
    return f"{prefix}{quote('last_message_at')} DESC NULLS LAST, {prefix}{quote('id')} DESC"


@functools.cache
def _plain_page_and_total_sql(conditions: tuple[str, ...], tally_conditions: tuple[str, ...]) -> str:
    """``_plain_page_sql`` with the tally's total as one more column: the page joined to the one-row
    sum, so an empty page is one row of NULLs that still carries the total."""
    return (
        f"SELECT {model_columns(Conversation, alias='listed')}, tally.total"
        f" FROM ({_tally_sql(tally_conditions)}) AS tally"
        f" LEFT JOIN ({_plain_page_sql(conditions)}) AS listed ON true"
        f" ORDER BY {_page_order('listed')}"
    )


def conversation_list_total(filters: InboxFilters = InboxFilters()) -> int | None:
    """How many conversations ``conversation_list(filters)`` holds, read from the tally the database
    keeps (ConversationTally) when the filters are the tally's keys; None when the rows have to be
    counted (other filters, or no tally on this database). A page of the ORM's query asks it; a page
    of the prepared statement reads the same sum in its own statement (``_plain_page_and_total_sql``)."""
    if not filters.tally_keys_only or connection.vendor != "postgresql":
        return None
    conditions, params = _tally_conditions(filters)
    with prepared_cursor() as cursor:
        cursor.execute(_tally_sql(conditions), params)
        return int(cursor.fetchone()[0])


def _tally_conditions(filters: InboxFilters) -> tuple[tuple[str, ...], list[str | bool]]:
    """The tally's WHERE conditions (and their parameters) for ``filters``, whose keys it must be."""
    conditions: list[str] = []
    params: list[str | bool] = []
    for column, value in (("channel", filters.channel), ("status", filters.status), ("archived", filters.archived)):
        if value is not None and value != "":
            conditions.append(f"{column} = %s")
            params.append(value)
    return tuple(conditions), params


def _tally_sql(conditions: tuple[str, ...]) -> str:
    # Written out: the ORM took longer to build it than PostgreSQL to run it.
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT COALESCE(SUM(count), 0)::bigint AS total FROM {ConversationTally._meta.db_table}{where}"


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
