"""MessageSerializer answers with fields built once per class (core.representation.PlannedRepresentation),
exactly as DRF's own per-object fields would."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from messaging.models import MessageStatus
from messaging.serializers import MessageSerializer
from tests.factories import MessageFactory, OutboxMessageFactory

pytestmark = pytest.mark.django_db


def _drf_output(message):
    # DRF's Serializer.to_representation, with fields built for this object as DRF does.
    return serializers.ModelSerializer.to_representation(MessageSerializer(), message)


def _messages():
    yield MessageFactory(attachments=["https://example.com/a.png"])
    yield OutboxMessageFactory(client_message_id="key-1", next_attempt_at=timezone.now() + timedelta(seconds=30))
    yield OutboxMessageFactory(
        status=MessageStatus.FAILED,
        next_attempt_at=None,
        last_error={"code": 400, "message": "Invalid 'To' number"},
        attempts=3,
    )


def test_the_shared_fields_answer_as_drf_builds_them():
    for message in _messages():
        message.refresh_from_db()
        assert MessageSerializer(message).data == _drf_output(message)
        assert list(MessageSerializer(message).data) == list(_drf_output(message))  # same order


def test_fields_are_built_once_not_per_object(monkeypatch):
    messages = list(_messages())
    MessageSerializer(messages[0]).data  # noqa: B018 - builds the class's fields if nothing did yet
    built = []
    original = serializers.ModelSerializer.get_fields
    monkeypatch.setattr(serializers.ModelSerializer, "get_fields", lambda self: built.append(1) or original(self))

    pages = MessageSerializer(messages, many=True).data

    assert len(pages) == 3
    assert built == []
