"""One contact search for the back office and the API: any spelling of a phone number, an e-mail address
in any case, and full-text search over message bodies (PostgreSQL full text; a plain match on SQLite).

conversations does not import messaging (dependencies point the other way), so the message model is
reached through the ``Conversation.messages`` relation.
"""

from __future__ import annotations

import contextlib
import re

from django.db import connection
from django.db.models import Q, QuerySet

from conversations.addresses import InvalidAddress, normalise_phone
from conversations.models import Conversation

#: What a typed phone number may contain: digits and the usual separators.
_PHONE_SHAPE = re.compile(r"^\+?[\d\s().\-/]+$")
#: Fewer digits than this match too much to mean a number (they still search bodies).
MIN_PHONE_DIGITS = 4
#: The configuration of the GIN index on message bodies (messaging migration 0005): the query must use
#: the same expression for PostgreSQL to use the index.
TEXT_SEARCH_CONFIG = "english"


def message_model():
    return Conversation._meta.get_field("messages").related_model


def phone_fragments(term: str) -> set[str]:
    """Digit strings an E.164 address containing the typed number contains: the digits as typed, and the
    national number as E.164 when the term parses as one (``020 7946 0958`` -> ``442079460958``)."""
    term = term.strip()
    if not _PHONE_SHAPE.match(term):
        return set()
    digits = re.sub(r"\D", "", term)
    if len(digits) < MIN_PHONE_DIGITS:
        return set()
    fragments = {digits}
    with contextlib.suppress(InvalidAddress):
        fragments.add(normalise_phone(term).lstrip("+"))
    return fragments


def contact_q(term: str, *, fields: tuple[str, ...]) -> Q:
    """Rows whose address fields match ``term``: a phone number in any spelling or a digit fragment of
    one, or (anything else) a case-insensitive part of an address. Empty ``Q`` never happens: a blank
    term matches nothing."""
    term = term.strip()
    if not term:
        return Q(pk__in=[])
    condition = Q(pk__in=[])
    fragments = phone_fragments(term)
    if fragments:
        for field in fields:
            for fragment in fragments:
                condition |= Q(**{f"{field}__contains": fragment})
        return condition
    address = term.removeprefix("mailto:").strip()
    for field in fields:
        condition |= Q(**{f"{field}__icontains": address})
    return condition


def messages_matching_text(term: str, queryset: QuerySet | None = None) -> QuerySet:
    """Messages whose body matches ``term``: PostgreSQL full text (web-search syntax: words, "a phrase",
    -not, or), served by the GIN index; a case-insensitive substring on SQLite."""
    queryset = message_model().objects.all() if queryset is None else queryset
    term = term.strip()
    if not term:
        return queryset.none()
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        return queryset.alias(_body_search=SearchVector("body", config=TEXT_SEARCH_CONFIG)).filter(
            _body_search=SearchQuery(term, config=TEXT_SEARCH_CONFIG, search_type="websearch")
        )
    return queryset.filter(body__icontains=term)


def conversation_search(queryset: QuerySet[Conversation], term: str) -> QuerySet[Conversation]:
    """Conversations with a participant matching ``term``; for a term that is not a phone number, also
    those with a message whose body matches."""
    contact = contact_q(term, fields=("participant_a", "participant_b"))
    if phone_fragments(term):
        return queryset.filter(contact)
    return queryset.filter(contact | Q(pk__in=messages_matching_text(term).values("conversation_id")))


def message_search(queryset: QuerySet, term: str) -> QuerySet:
    """Messages whose thread's contact matches ``term``; for a term that is not a phone number, also
    messages whose body matches."""
    threads = Conversation.objects.filter(contact_q(term, fields=("participant_a", "participant_b"))).values("pk")
    if phone_fragments(term):
        return queryset.filter(conversation_id__in=threads)
    return queryset.filter(Q(conversation_id__in=threads) | Q(pk__in=messages_matching_text(term).values("pk")))
