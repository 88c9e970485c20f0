"""The inbox API: a conversation with its newest messages, state changes, and the list's filters."""

from datetime import UTC, datetime, timedelta

import pytest

from conversations.models import Conversation
from tests import payloads
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def inbound_sms(client, **overrides):
    response = client.post("/api/webhooks/sms", payloads.inbound_sms(**overrides), content_type="application/json")
    assert response.status_code == 200, response.content
    return response


def thread_of(count):
    conversation = ConversationFactory()
    for minute in range(count):
        MessageFactory(conversation=conversation, body=f"message {minute}", timestamp=T0 + timedelta(minutes=minute))
    return conversation


class TestDetail:
    def test_returns_the_newest_50_messages_newest_first(self, api):
        conversation = thread_of(60)

        body = api.get(f"/api/conversations/{conversation.pk}").json()

        assert body["id"] == conversation.pk
        assert len(body["messages"]) == 50
        assert body["messages"][0]["body"] == "message 59"
        assert body["messages"][-1]["body"] == "message 10"
        assert body["messages_meta"] == {"page": 1, "limit": 50, "total": 60}
        assert {"from", "to", "status", "error", "attachments"} <= set(body["messages"][0])

    def test_pages_older_messages_with_page_and_limit(self, api):
        conversation = thread_of(5)

        body = api.get(f"/api/conversations/{conversation.pk}/", {"page": 2, "limit": 2}).json()

        assert [m["body"] for m in body["messages"]] == ["message 2", "message 1"]
        assert body["messages_meta"] == {"page": 2, "limit": 2, "total": 5}

    def test_unknown_conversation_is_404_in_the_envelope(self, api):
        response = api.get("/api/conversations/999999")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    def test_bad_paging_is_400(self, api):
        conversation = thread_of(1)

        assert api.get(f"/api/conversations/{conversation.pk}?limit=0").status_code == 400


class TestStateChanges:
    @pytest.mark.parametrize("path", ["close", "close/"])
    def test_close_is_idempotent_and_answers_the_conversation(self, api, path):
        conversation = ConversationFactory()

        first = api.post(f"/api/conversations/{conversation.pk}/{path}")
        second = api.post(f"/api/conversations/{conversation.pk}/{path}")

        assert first.status_code == second.status_code == 200
        assert first.json()["status"] == second.json()["status"] == "closed"
        assert first.json()["id"] == conversation.pk

    @pytest.mark.parametrize("path", ["reopen", "reopen/"])
    def test_reopen(self, api, path):
        conversation = ConversationFactory(status="closed")

        response = api.post(f"/api/conversations/{conversation.pk}/{path}")

        assert response.status_code == 200
        assert response.json()["status"] == "open"

    @pytest.mark.parametrize("slash", ["", "/"])
    def test_archive_keeps_the_first_time_and_unarchive_clears_it(self, api, slash):
        conversation = ConversationFactory()

        archived = api.post(f"/api/conversations/{conversation.pk}/archive{slash}").json()
        again = api.post(f"/api/conversations/{conversation.pk}/archive{slash}").json()
        unarchived = api.post(f"/api/conversations/{conversation.pk}/unarchive{slash}")

        assert archived["archived_at"] is not None
        assert again["archived_at"] == archived["archived_at"]
        assert unarchived.status_code == 200
        assert unarchived.json()["archived_at"] is None

    @pytest.mark.parametrize("action", ["close", "reopen", "archive", "unarchive"])
    def test_unknown_conversation_is_404(self, api, action):
        response = api.post(f"/api/conversations/424242/{action}")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    def test_get_on_an_action_is_405(self, api):
        conversation = ConversationFactory()

        assert api.get(f"/api/conversations/{conversation.pk}/close").status_code == 405

    def test_an_inbound_message_reopens_and_unarchives(self, api, client):
        inbound_sms(client)
        conversation = Conversation.objects.get()
        api.post(f"/api/conversations/{conversation.pk}/close")
        api.post(f"/api/conversations/{conversation.pk}/archive")
        assert api.get("/api/conversations").json()["meta"]["total"] == 0

        inbound_sms(client)

        conversation.refresh_from_db()
        assert conversation.status == "open"
        assert conversation.archived_at is None
        assert api.get("/api/conversations").json()["data"][0]["id"] == conversation.pk

    def test_an_outbound_message_leaves_an_archived_thread_archived(self, api):
        api.post("/api/messages/sms", payloads.sms(), format="json")
        conversation = Conversation.objects.get()
        api.post(f"/api/conversations/{conversation.pk}/archive")

        api.post("/api/messages/sms", payloads.sms(body="follow-up"), format="json")

        conversation.refresh_from_db()
        assert conversation.archived_at is not None


class TestListFilters:
    def test_archived_threads_are_hidden_by_default(self, api):
        visible = ConversationFactory()
        archived = ConversationFactory(archived_at=T0)

        def ids(query=""):
            return {c["id"] for c in api.get(f"/api/conversations?{query}").json()["data"]}

        assert ids() == {visible.pk}
        assert ids("archived=false") == {visible.pk}
        assert ids("archived=true") == {archived.pk}

    def test_unread(self, api):
        unread = ConversationFactory(unread_count=2)
        read = ConversationFactory(unread_count=0)

        assert [c["id"] for c in api.get("/api/conversations?unread=true").json()["data"]] == [unread.pk]
        assert [c["id"] for c in api.get("/api/conversations?unread=false").json()["data"]] == [read.pk]

    @pytest.mark.parametrize("query", ["unread=maybe", "archived=2"])
    def test_bad_booleans_are_400(self, api, query):
        response = api.get(f"/api/conversations?{query}")

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"

    @pytest.mark.parametrize("term", ["(415) 555-0199", "415.555.0199", "5550199", "+1 415 555 0199", "14155550199"])
    def test_q_finds_a_contact_by_any_phone_spelling(self, api, term):
        wanted = ConversationFactory(participant_a="+14155550199", participant_b="+18045551234")
        ConversationFactory(participant_a="+14155550100", participant_b="+18045551234")

        found = [c["id"] for c in api.get("/api/conversations", {"q": term}).json()["data"]]

        assert found == [wanted.pk]

    def test_q_finds_an_email_contact_in_any_case(self, api):
        wanted = ConversationFactory(channel="email", participant_a="jane.doe@example.com", participant_b="x@shop.com")

        found = [c["id"] for c in api.get("/api/conversations", {"q": "Jane.DOE@Example.com"}).json()["data"]]

        assert found == [wanted.pk]

    def test_q_searches_message_text(self, api):
        wanted = MessageFactory(body="My parcel never arrived and I want a refund").conversation
        MessageFactory(body="Thanks, all good")

        found = [c["id"] for c in api.get("/api/conversations", {"q": "refunds parcel"}).json()["data"]]

        assert found == [wanted.pk]


class TestEmailThreading:
    def test_addresses_differing_only_by_case_share_one_thread(self, api, client):
        api.post("/api/messages/email", payloads.email(to="Contact@Gmail.com"), format="json")
        client.post(
            "/api/webhooks/email",
            payloads.inbound_email(**{"from": "CONTACT@gmail.com"}),
            content_type="application/json",
        )

        conversation = Conversation.objects.get()
        assert conversation.participants == ["contact@gmail.com", "user@usehatchapp.com"]
        assert conversation.message_count == 2
        sent_to = sorted(conversation.messages.values_list("to_address", "from_address"))
        assert ("Contact@gmail.com", "user@usehatchapp.com") in sent_to, "a message keeps the address as sent"
        assert ("user@usehatchapp.com", "CONTACT@gmail.com") in sent_to
