from datetime import UTC, datetime, timedelta

import pytest

from conversations.models import Conversation
from tests import payloads
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

CONVERSATION_FIELDS = {
    "id",
    "channel",
    "participants",
    "last_message_at",
    "last_message_preview",
    "message_count",
    "unread_count",
    "last_read_at",
    "status",
    "archived_at",
    "created_at",
}


def send_sms(api, **overrides):
    response = api.post("/api/messages/sms", payloads.sms(**overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_list_uses_the_envelope_with_every_field(api):
    send_sms(api)

    body = api.get("/api/conversations").json()

    assert body["meta"] == {"page": 1, "limit": 20, "total": 1}
    (conversation,) = body["data"]
    assert set(conversation) == CONVERSATION_FIELDS
    assert conversation["participants"] == ["+12016661234", "+18045551234"]
    assert conversation["channel"] == "sms"
    assert conversation["status"] == "open"


def test_both_directions_and_formats_of_a_pair_share_one_conversation(api, client):
    send_sms(api, **{"from": "+12016661234", "to": "+18045551234"})
    send_sms(api, **{"from": "+1 (804) 555-1234", "to": "+1 201 666 1234"})
    send_sms(api, **{"from": "8045551234", "to": "(201) 666-1234", "attachments": ["https://e.com/a.png"]})
    client.post("/api/webhooks/sms", payloads.inbound_sms(), content_type="application/json")

    assert Conversation.objects.count() == 1
    assert Conversation.objects.get().message_count == 4


def test_sms_and_email_between_the_same_people_are_separate_channels(api):
    send_sms(api)
    api.post("/api/messages/email", payloads.email(), format="json")

    assert sorted(Conversation.objects.values_list("channel", flat=True)) == ["email", "sms"]


def test_email_threads_ignore_domain_case(api):
    reply = payloads.email(**{"from": "contact@gmail.com", "to": "user@UseHatchApp.com"})
    assert api.post("/api/messages/email", payloads.email(to="contact@GMAIL.com"), format="json").status_code == 201
    assert api.post("/api/messages/email", reply, format="json").status_code == 201

    assert Conversation.objects.count() == 1


def test_newest_activity_comes_first(api):
    old = send_sms(api, to="+12025550001", timestamp="2024-01-01T00:00:00Z")
    new = send_sms(api, to="+12025550002", timestamp="2024-06-01T00:00:00Z")
    ConversationFactory()  # no messages yet: listed last

    ids = [c["id"] for c in api.get("/api/conversations").json()["data"]]

    assert ids[:2] == [new["conversation_id"], old["conversation_id"]]
    assert len(ids) == 3


def test_a_late_arriving_older_message_does_not_replace_the_preview(api):
    send_sms(api, body="newest", timestamp="2024-06-01T00:00:00Z")
    send_sms(api, body="older", timestamp="2024-01-01T00:00:00Z")

    conversation = api.get("/api/conversations").json()["data"][0]
    assert conversation["last_message_preview"] == "newest"
    assert conversation["last_message_at"] == "2024-06-01T00:00:00Z"
    assert conversation["message_count"] == 2


def test_paging_reports_the_total_and_clamps_the_limit(api):
    for n in range(5):
        ConversationFactory(last_message_at=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=n))

    page = api.get("/api/conversations?page=2&limit=2").json()
    assert page["meta"] == {"page": 2, "limit": 2, "total": 5}
    assert len(page["data"]) == 2
    assert api.get("/api/conversations?limit=1000").json()["meta"]["limit"] == 100
    beyond = api.get("/api/conversations?page=9").json()
    assert beyond["data"] == []
    assert beyond["meta"]["total"] == 5


def test_filters_by_channel_status_and_participant(api):
    send_sms(api)
    api.post("/api/messages/email", payloads.email(), format="json")
    ConversationFactory(status="closed", participant_a="+12025550100")

    def ids(query):
        return {c["channel"] for c in api.get(f"/api/conversations?{query}").json()["data"]}

    assert ids("channel=email") == {"email"}
    assert len(api.get("/api/conversations?status=closed").json()["data"]) == 1
    by_participant = api.get("/api/conversations", {"participant": "+1 (804) 555-1234"}).json()["data"]
    assert {c["channel"] for c in by_participant} == {"sms"}
    assert len(by_participant) == 2
    assert ids("participant=CONTACT@gmail.com") == {"email"}, "threads compare whole addresses case-insensitively"
    assert ids("participant=contact@GMAIL.com") == {"email"}


@pytest.mark.parametrize("query", ["channel=fax", "status=maybe", "participant=not%20a%20phone"])
def test_invalid_filters_are_400(api, query):
    assert api.get(f"/api/conversations?{query}").status_code == 400


def test_get_one_conversation(api):
    sent = send_sms(api)

    response = api.get(f"/api/conversations/{sent['conversation_id']}/")

    assert response.status_code == 200
    assert response.json()["id"] == sent["conversation_id"]


@pytest.mark.parametrize("conversation_id", ["424242", "abc", "99999999999999999999"])
def test_unknown_conversations_are_404(api, conversation_id):
    assert api.get(f"/api/conversations/{conversation_id}").status_code == 404
    assert api.get(f"/api/conversations/{conversation_id}/messages").status_code == 404
    assert api.post(f"/api/conversations/{conversation_id}/read").status_code == 404


def test_messages_of_a_conversation_newest_first_by_default(api):
    first = send_sms(api, body="first", timestamp="2024-11-01T14:00:00Z")
    second = send_sms(api, body="second", timestamp="2024-11-01T14:05:00Z")
    path = f"/api/conversations/{first['conversation_id']}/messages"

    desc = api.get(path).json()
    asc = api.get(f"{path}?order=asc").json()

    assert [m["id"] for m in desc["data"]] == [second["id"], first["id"]]
    assert [m["id"] for m in asc["data"]] == [first["id"], second["id"]]
    assert desc["meta"] == {"page": 1, "limit": 50, "total": 2}
    assert api.get(f"{path}?limit=5000").json()["meta"]["limit"] == 200
    assert api.get(f"{path}?order=sideways").status_code == 400


def test_messages_of_one_conversation_only(api):
    mine = MessageFactory()
    MessageFactory()

    body = api.get(f"/api/conversations/{mine.conversation_id}/messages").json()

    assert [m["id"] for m in body["data"]] == [mine.pk]


def test_marking_read_clears_unread_and_sets_last_read_at(api, client):
    client.post("/api/webhooks/sms", payloads.inbound_sms(), content_type="application/json")
    conversation = Conversation.objects.get()
    assert conversation.unread_count == 1

    response = api.post(f"/api/conversations/{conversation.pk}/read")

    assert response.status_code == 200
    assert response.json()["unread_count"] == 0
    assert response.json()["last_read_at"] is not None
    conversation.refresh_from_db()
    assert conversation.unread_count == 0
