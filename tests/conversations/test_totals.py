"""Page totals without counting rows: the inbox's from the tally PostgreSQL keeps, a thread's from its
``message_count``. Whatever writes conversations, the totals stay equal to a count of the rows.
(On SQLite the inbox counts rows: tests/test_sqlite_fallback.py.)"""

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Case, Value, When
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, ConversationTally
from conversations.selectors import InboxFilters, conversation_list, conversation_list_total
from conversations.services import conversation_archive, conversation_close
from core.pagination import PageRequest, page_total
from tests import payloads
from tests.factories import ConversationFactory, MessageFactory

FILTERS = [
    InboxFilters(channel=channel, status=status, archived=archived)
    for channel, status, archived in itertools.product(
        [None, "sms", "email"], [None, "open", "closed"], [False, True, None]
    )
]


def assert_totals_match_counts():
    for filters in FILTERS:
        assert conversation_list_total(filters) == conversation_list(filters).count(), filters


def post_sms(client, **overrides):
    return client.post(
        "/api/webhooks/sms", data=json.dumps(payloads.inbound_sms(**overrides)), content_type="application/json"
    )


@pytest.mark.django_db
class TestInboxTotal:
    def test_every_write_path_keeps_the_total_equal_to_a_count(self, api):
        for number in range(6):
            assert post_sms(Client(), **{"from": f"+1201555{number:04d}"}).status_code == 200
        assert api.post("/api/messages/email", payloads.email(), format="json").status_code == 201
        first, second, third = Conversation.objects.order_by("id")[:3]
        conversation_close(conversation_id=first.pk)
        conversation_archive(conversation_id=second.pk)
        conversation_archive(conversation_id=third.pk)
        assert api.post(f"/api/conversations/{third.pk}/unarchive").status_code == 200
        # An inbound message reopens and unarchives in the ingest statement's ON CONFLICT branch.
        assert post_sms(Client(), **{"from": first.participant_a, "to": first.participant_b}).status_code == 200
        Conversation.objects.filter(pk=third.pk).update(channel="email")
        ConversationFactory.create_batch(3, status="closed")
        Conversation.objects.filter(pk=Conversation.objects.order_by("-id")[0].pk).delete()

        assert Conversation.objects.get(pk=first.pk).status == "open"
        assert_totals_match_counts()
        assert conversation_list_total() == Conversation.objects.filter(archived_at__isnull=True).count() == 8

    def test_bulk_statements_are_counted_by_key_in_one_go(self):
        Conversation.objects.bulk_create(
            Conversation(
                channel=("sms", "email")[n % 2], participant_a=f"+1201555{n:04d}", participant_b="+18045551234"
            )
            for n in range(300)
        )
        Conversation.objects.filter(channel="email").update(status="closed")
        Conversation.objects.filter(pk__in=Conversation.objects.filter(channel="sms").values("pk")[:50]).delete()

        assert_totals_match_counts()
        assert conversation_list_total(InboxFilters(channel="email", status="closed")) == 150
        assert ConversationTally.objects.count() <= 4  # one row per key for this backend

    def test_an_update_that_moves_no_row_between_keys_leaves_the_tally_alone(self):
        conversation = ConversationFactory()
        before = list(ConversationTally.objects.values_list("shard", "channel", "status", "archived", "count"))

        Conversation.objects.filter(pk=conversation.pk).update(status="open", unread_count=3)

        assert list(ConversationTally.objects.values_list("shard", "channel", "status", "archived", "count")) == before

    def test_an_update_is_counted_unless_its_rows_keys_are_the_same_before_and_after(self):
        # The triggers skip a statement whose rows' keys are the same multiset before and after
        # (migration 0005). Rows that only trade keys between them change no total; one row that keeps
        # its key beside one that moves to it is counted, though its keys as a set did not change.
        first, second = ConversationFactory(status="open"), ConversationFactory(status="closed")
        both = Conversation.objects.filter(pk__in=[first.pk, second.pk])
        both.update(status=Case(When(pk=first.pk, then=Value("closed")), default=Value("open")))
        assert_totals_match_counts()

        both.update(status="open")  # one open -> open, one closed -> open
        assert_totals_match_counts()
        assert conversation_list_total(InboxFilters(status="open")) == 2
        nobody = Conversation.objects.filter(participant_a="+10000000000")  # statements that match no row
        nobody.update(status="closed")
        nobody.delete()
        assert_totals_match_counts()
        assert conversation_list_total(InboxFilters(status="closed")) == 0

    def test_the_inbox_page_reads_its_total_without_counting_conversations(self, api):
        ConversationFactory.create_batch(3)
        conversation_archive(conversation_id=Conversation.objects.first().pk)

        with CaptureQueriesContext(connection) as queries:
            response = api.get("/api/conversations?channel=sms&status=open&limit=1")  # a full page

        assert response.json()["meta"]["total"] == 2
        assert [q for q in queries if "conversationtally" in q["sql"]]
        counted = [
            q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and 'conversations_conversation"' in q["sql"]
        ]
        assert counted == []

    def test_a_page_that_is_not_full_counts_nothing(self, api):
        ConversationFactory.create_batch(3)

        with CaptureQueriesContext(connection) as queries:
            response = api.get("/api/conversations?limit=5")

        assert response.json()["meta"]["total"] == 3
        assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]

    def test_filters_the_tally_cannot_answer_are_counted(self, api):
        ConversationFactory.create_batch(2)
        MessageFactory()  # its conversation stays unread=0: the factory counts messages only

        assert conversation_list_total(InboxFilters(unread=True)) is None
        assert conversation_list_total(InboxFilters(participant="+12015550000")) is None
        assert conversation_list_total(InboxFilters(q="hello")) is None
        assert api.get("/api/conversations?unread=false").json()["meta"]["total"] == 3


@pytest.mark.django_db(transaction=True)
class TestTallyUnderConcurrency:
    def test_concurrent_first_messages_from_many_senders_are_each_counted_once(self):
        barrier = threading.Barrier(12)

        def deliver(index):
            try:
                barrier.wait(timeout=10)
                return post_sms(Client(), **{"from": f"+1201555{index:04d}", "messaging_provider_id": f"race-{index}"})
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(pool.map(deliver, range(12)))

        assert [r.status_code for r in responses] == [200] * 12
        assert conversation_list_total() == Conversation.objects.count() == 12

    def test_truncating_the_conversations_empties_the_tally(self):
        ConversationFactory.create_batch(2)

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE conversations_conversation CASCADE")

        assert conversation_list_total(InboxFilters(archived=None)) == 0


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_conversations_that_exist_before_it():
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("conversations", "0003_email_threads_case_insensitive")])
    try:
        old_apps = executor.loader.project_state([("conversations", "0003_email_threads_case_insensitive")]).apps
        before = old_apps.get_model("conversations", "Conversation").objects
        before.create(channel="sms", participant_a="+12015550001", participant_b="+18045551234")
        before.create(channel="sms", participant_a="+12015550002", participant_b="+18045551234", status="closed")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert conversation_list_total() == 2
    assert conversation_list_total(InboxFilters(status="closed")) == 1
    ConversationFactory()
    assert conversation_list_total() == 3


@pytest.mark.django_db
class TestThreadTotal:
    def test_a_thread_page_reads_its_total_from_the_conversation(self, api):
        conversation = ConversationFactory()
        MessageFactory.create_batch(3, conversation=conversation)

        with CaptureQueriesContext(connection) as queries:
            page = api.get(f"/api/conversations/{conversation.pk}/messages?limit=2")
            detail = api.get(f"/api/conversations/{conversation.pk}?limit=2")

        assert page.json()["meta"]["total"] == detail.json()["messages_meta"]["total"] == 3
        assert len(page.json()["data"]) == len(detail.json()["messages"]) == 2
        assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]

    def test_a_thread_that_fits_on_its_page_is_one_query_after_the_key(self, api):
        conversation = ConversationFactory()
        MessageFactory.create_batch(3, conversation=conversation)

        with CaptureQueriesContext(connection) as queries:
            page = api.get(f"/api/conversations/{conversation.pk}/messages?limit=5&order=asc")

        assert page.json()["meta"] == {"page": 1, "limit": 5, "total": 3}
        reads = [q["sql"] for q in queries if "apikeys" not in q["sql"]]
        assert len(reads) == 1
        assert "messaging_message" in reads[0]

    def test_an_unknown_or_empty_conversation_is_told_apart(self, api):
        empty = ConversationFactory()

        assert api.get(f"/api/conversations/{empty.pk + 1000}/messages").status_code == 404
        assert api.get("/api/conversations/abc/messages").status_code == 404
        response = api.get(f"/api/conversations/{empty.pk}/messages")
        assert response.status_code == 200
        assert response.json() == {"data": [], "meta": {"page": 1, "limit": 50, "total": 0}}

    def test_sent_and_received_messages_are_all_in_the_total(self, api):
        assert api.post("/api/messages/sms", payloads.sms(), format="json").status_code == 201
        sent = Conversation.objects.get()
        reply = payloads.inbound_sms(**{"from": payloads.sms()["to"], "to": payloads.sms()["from"]})
        assert (
            Client().post("/api/webhooks/sms", data=json.dumps(reply), content_type="application/json").status_code
            == 200
        )

        page = api.get(f"/api/conversations/{sent.pk}/messages").json()

        assert page["meta"]["total"] == len(page["data"]) == 2

    def test_a_page_past_the_end_is_empty_with_the_kept_total(self, api):
        conversation = ConversationFactory()
        MessageFactory(conversation=conversation)

        with CaptureQueriesContext(connection) as queries:
            response = api.get(f"/api/conversations/{conversation.pk}?page=3")

        assert response.json()["messages"] == []
        assert response.json()["messages_meta"]["total"] == 1
        assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]

    @pytest.mark.parametrize("limit", [2, 5])
    def test_messages_loaded_without_counting_them_are_still_listed_and_counted(self, api, limit):
        # Rows written behind the service's back (a bulk load that leaves message_count at 0): a counter
        # that disagrees with the page is not trusted; the rows are shown and counted.
        conversation = ConversationFactory()
        for body in ("one", "two", "three"):
            MessageFactory.build(conversation=conversation, body=body).save()
        assert Conversation.objects.get(pk=conversation.pk).message_count == 0

        page = api.get(f"/api/conversations/{conversation.pk}/messages?limit={limit}").json()
        detail = api.get(f"/api/conversations/{conversation.pk}?limit={limit}").json()

        assert page["meta"]["total"] == detail["messages_meta"]["total"] == 3
        assert len(page["data"]) == len(detail["messages"]) == min(limit, 3)


@pytest.mark.parametrize(
    ("offset_page", "rows_on_page", "kept", "expected", "counts"),
    [
        (1, 20, 500, 500, False),  # a full page: the kept counter
        (1, 7, 500, 7, False),  # a page that is not full is the last one, whatever the counter says
        (3, 5, None, 45, False),  # the same without a counter
        (1, 0, 9, 0, False),  # an empty first page: nothing there
        (1, 20, 3, 64, True),  # the counter is below what the page shows: counted
        (9, 0, 100, 100, False),  # past the end, the counter agrees
        (9, 0, 900, 64, True),  # past the end, the counter says the page should hold rows: counted
        (1, 20, None, 64, True),  # no counter, a full page: counted
    ],
)
def test_page_total_counts_only_when_the_page_and_the_counter_cannot_tell(
    offset_page, rows_on_page, kept, expected, counts
):
    class Rows:
        counted = False

        def count(self):
            self.counted = True
            return 64

    rows = Rows()
    page = PageRequest(page=offset_page, limit=20)

    assert page_total(rows, page, [object()] * rows_on_page, kept=kept) == expected
    assert rows.counted is counts


@pytest.mark.django_db(transaction=True)
def test_recount_conversations_repairs_totals_after_a_load_behind_the_services_back(api):
    conversation = ConversationFactory()
    for body in ("one", "two", "three"):
        MessageFactory.build(conversation=conversation, body=body).save()  # message_count stays 0
    ConversationFactory.create_batch(4, status="closed")
    ConversationTally.objects.filter(status="closed").delete()  # as if loaded with the triggers off
    assert conversation_list_total(InboxFilters(archived=None)) == 1

    out = StringIO()
    call_command("recount_conversations", stdout=out)

    assert "message_count corrected on 1 conversation(s); tally rebuilt." in out.getvalue()
    assert Conversation.objects.get(pk=conversation.pk).message_count == 3
    assert_totals_match_counts()
    assert conversation_list_total(InboxFilters(status="closed")) == 4
