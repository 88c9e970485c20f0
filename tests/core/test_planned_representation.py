"""PlannedRepresentation renders exactly what DRF's own to_representation renders, only faster."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from rest_framework import serializers

from conversations.serializers import ConversationSerializer
from core.representation import PlannedRepresentation
from messaging.serializers import MessageSerializer
from tests.factories import ConversationFactory, MessageFactory, OutboxMessageFactory

pytestmark = pytest.mark.django_db


def drf(serializer_class, instance):
    """What DRF's ModelSerializer would render, bypassing the mixin."""
    return dict(serializers.ModelSerializer.to_representation(serializer_class(), instance))


def test_the_serializers_use_the_planned_representation():
    assert issubclass(MessageSerializer, PlannedRepresentation)
    assert issubclass(ConversationSerializer, PlannedRepresentation)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
        {"timestamp": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=30)))},
        {"attachments": ["https://example.com/a.png", "https://example.com/b.pdf"], "type": "mms"},
        {"body": "", "client_message_id": "abc-1"},
    ],
)
def test_messages_render_as_drf_renders_them(overrides):
    message = MessageFactory(**overrides)
    message.refresh_from_db()

    assert MessageSerializer(message).data == drf(MessageSerializer, message)


def test_outbound_messages_with_an_error_and_a_retry_time_render_as_drf_renders_them():
    message = OutboxMessageFactory(last_error={"code": "provider_error", "message": "Busy"}, attempts=2)
    message.refresh_from_db()

    rendered = MessageSerializer(message).data

    assert rendered == drf(MessageSerializer, message)
    assert rendered["error"] == {"code": "provider_error", "message": "Busy"}
    assert rendered["next_attempt_at"].endswith("Z")
    assert rendered["from"] == message.from_address


def test_conversations_render_as_drf_renders_them_in_a_page():
    now = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    conversations = [
        ConversationFactory(),
        ConversationFactory(last_message_at=now, last_read_at=now, archived_at=now, status="closed"),
    ]
    for conversation in conversations:
        conversation.refresh_from_db()

    page = ConversationSerializer(conversations, many=True).data

    assert page == [drf(ConversationSerializer, conversation) for conversation in conversations]
    assert page[1]["archived_at"] == "2026-05-06T07:08:09.123456Z"
    assert page[1]["participants"] == conversations[1].participants


def test_the_schema_describes_the_resources_not_how_they_are_rendered(client):
    # drf-spectacular takes a serializer's description from its docstring, inherited along the MRO.
    components = client.get("/api/schema/?format=json").json()["components"]["schemas"]

    for name in ("Message", "Conversation", "ConversationDetail"):
        description = components[name].get("description", "")
        assert description
        assert "to_representation" not in description
        assert "PlannedRepresentation" not in description


def test_a_plan_is_made_once_per_class_not_per_object():
    first, second = MessageFactory(), MessageFactory()
    one, two = MessageSerializer(first), MessageSerializer(second)
    assert one.data["id"] == first.pk
    assert two.data["id"] == second.pk

    assert one._representation_plan is two._representation_plan


def test_each_time_zone_has_its_own_plan():
    from django.utils import timezone as django_timezone

    message = MessageFactory(timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    message.refresh_from_db()
    in_utc = MessageSerializer(message).data
    with django_timezone.override("Asia/Kolkata"):
        in_kolkata = MessageSerializer(message).data
        expected = drf(MessageSerializer, message)

    assert in_utc["timestamp"] == "2026-01-02T03:04:05Z"
    assert in_kolkata == expected
    assert in_kolkata["timestamp"] == "2026-01-02T08:34:05+05:30"
