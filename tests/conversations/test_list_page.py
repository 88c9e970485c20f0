"""The inbox page: with the filters other than a participant and a search it is one prepared statement
(conversations.selectors.conversation_list_page), which also reads the total from the tally when the
tally can answer it, and it is the page the ORM query gives, in the same order, whatever the filters."""

import dataclasses
import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import selectors
from conversations.models import Conversation
from conversations.selectors import InboxFilters, conversation_list, conversation_list_page
from core.pagination import PageRequest
from tests.factories import ConversationFactory
from tests.prepared_statements import prepared_runs

pytestmark = pytest.mark.django_db

FILTERS = [
    InboxFilters(channel=channel, status=status, unread=unread, archived=archived)
    for channel, status, unread, archived in itertools.product(
        [None, "sms", "email"], [None, "open", "closed"], [None, True, False], [False, True, None]
    )
]


@pytest.fixture
def inbox():
    now = timezone.now()
    for number in range(14):
        ConversationFactory(
            channel="email" if number % 3 == 0 else "sms",
            participant_a=f"customer{number}@example.com" if number % 3 == 0 else f"+1201555{number:04d}",
            status="closed" if number % 4 == 0 else "open",
            unread_count=number % 2,
            archived_at=now if number % 5 == 0 else None,
            # Ties on last_message_at (ordered by id then) and conversations without messages (last).
            last_message_at=None if number % 6 == 0 else now - timedelta(minutes=number // 2),
        )


@pytest.mark.usefixtures("inbox")
@pytest.mark.parametrize(
    "page", [PageRequest(page=1, limit=4), PageRequest(page=2, limit=4), PageRequest(page=1, limit=50)]
)
def test_each_page_is_the_orm_querys_page_with_its_total(page):
    for filters in FILTERS:
        rows = conversation_list(filters)
        items, total = conversation_list_page(filters=filters, page=page)

        assert [conversation.pk for conversation in items] == [
            conversation.pk for conversation in rows[page.offset : page.offset + page.limit]
        ], filters
        assert total == rows.count(), filters


def test_the_conversations_are_read_as_the_orm_reads_them():
    ConversationFactory(last_message_preview="hello", message_count=3, unread_count=1, last_read_at=timezone.now())

    [item], _ = conversation_list_page(filters=InboxFilters(), page=PageRequest(page=1, limit=20))
    [read] = Conversation.objects.all()

    fields = [field.attname for field in Conversation._meta.concrete_fields]
    assert [getattr(item, name) for name in fields] == [getattr(read, name) for name in fields]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
@pytest.mark.usefixtures("inbox")
@pytest.mark.parametrize("limit", [50, 2], ids=["not-full", "full"])
def test_a_page_and_its_total_are_one_prepared_statement(limit):
    """A full page needs the total from the tally; the same statement reads it with the page."""
    # The tally's channel and archived, then the page's channel, limit and offset.
    page_statement = (
        'channel = $1 AND archived = $2%FROM "conversations_conversation" WHERE "channel" = $3%LIMIT $4 OFFSET $5'
    )
    runs_before = sum(prepared_runs(page_statement))  # one statement per set of parameter types
    with CaptureQueriesContext(connection) as queries:
        items, total = conversation_list_page(filters=InboxFilters(channel="sms"), page=PageRequest(1, limit))

    assert len(queries) == 1
    assert "conversationtally" in queries[0]["sql"]
    runs = prepared_runs(page_statement)
    assert len(runs) >= 1
    assert sum(runs) == runs_before + 1, "the page's one statement ran prepared"
    assert total == Conversation.objects.filter(channel="sms", archived_at__isnull=True).count()
    assert len(items) == min(limit, total)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the tally is PostgreSQL's")
@pytest.mark.usefixtures("inbox")
def test_a_page_past_the_end_is_empty_with_the_tallys_total():
    filters = InboxFilters(channel="sms")
    expected = conversation_list(filters).count()
    with CaptureQueriesContext(connection) as queries:
        items, total = conversation_list_page(filters=filters, page=PageRequest(page=50, limit=4))

    assert items == []
    assert total == expected > 0
    assert len(queries) == 1, "no COUNT: the tally's total came with the (empty) page"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the tally is PostgreSQL's")
@pytest.mark.usefixtures("inbox")
def test_the_total_is_the_tallys_read_by_the_pages_own_statement():
    """A tally that disagrees with the rows but is consistent with the page is believed (page_total's
    rule): the total shows the tally's sum, read by the one statement, not a count of the rows."""
    counted = conversation_list(InboxFilters()).count()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE conversations_conversationtally SET count = count + 1000"
            " WHERE id = (SELECT min(id) FROM conversations_conversationtally WHERE NOT archived)"
        )

    with CaptureQueriesContext(connection) as queries:
        _, total = conversation_list_page(filters=InboxFilters(), page=PageRequest(page=1, limit=2))

    assert total == counted + 1000
    assert len(queries) == 1


@pytest.mark.usefixtures("inbox")
def test_a_participant_or_a_search_still_filters():
    items, total = conversation_list_page(
        filters=InboxFilters(participant="customer3@example.com"), page=PageRequest(1, 20)
    )
    assert [item.participant_a for item in items] == ["customer3@example.com"]
    assert total == 1
    items, total = conversation_list_page(filters=InboxFilters(q="customer9@example.com"), page=PageRequest(1, 20))
    assert total == len(items)
    assert "customer9@example.com" in {item.participant_a for item in items}


def test_a_filter_the_statement_does_not_write_out_goes_through_the_orm(monkeypatch):
    """Every filter of InboxFilters is either written out by the prepared statement or sends the page
    through conversation_list; a filter added later cannot be ignored by the statement."""
    prepared = []
    monkeypatch.setattr(selectors, "prepared_models", lambda *args: prepared.append(args) or [])
    monkeypatch.setattr(selectors, "prepared_models_and_value", lambda *args: prepared.append(args) or ([], 0))
    others = {field.name for field in dataclasses.fields(InboxFilters)} - selectors._PLAIN_FILTERS
    assert others == {"participant", "q"}, "a new filter: decide whether the prepared statement writes it out"
    for name, value in [("participant", "+12015550000"), ("q", "hello"), ("q", "   ")]:
        conversation_list_page(filters=InboxFilters(**{name: value}), page=PageRequest(1, 20))
    assert prepared == []
    conversation_list_page(filters=InboxFilters(channel="sms", status="open", unread=True), page=PageRequest(1, 20))
    conversation_list_page(filters=InboxFilters(channel="sms", status="open"), page=PageRequest(1, 20))
    assert len(prepared) == 2
