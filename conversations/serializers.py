from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.channels import channel_choices
from conversations.models import Conversation, ConversationStatus
from core.openapi import NOT_BLANK_PATTERN, PHONE_OR_EMAIL_FORMAT
from core.pagination import PageQuerySerializer

MAX_PARTICIPANT_LENGTH = 320


@extend_schema_field(
    {
        "type": "string",
        "format": PHONE_OR_EMAIL_FORMAT,
        "maxLength": MAX_PARTICIPANT_LENGTH,
        "pattern": NOT_BLANK_PATTERN,
    }
)
class ParticipantField(serializers.CharField):
    """A phone number or an e-mail address; one that is neither is a 400 (invalid_address)."""


class ConversationSerializer(serializers.ModelSerializer):
    participants = serializers.ListField(child=serializers.CharField(), read_only=True, min_length=2, max_length=2)

    class Meta:
        model = Conversation
        fields = [
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
        ]
        read_only_fields = fields


class ConversationListQuerySerializer(PageQuerySerializer):
    DEFAULT_LIMIT = 20
    MAX_LIMIT = 100

    limit = serializers.IntegerField(min_value=1, required=False, help_text="Default 20; above 100 is clamped to 100.")
    channel = serializers.ChoiceField(choices=channel_choices(), required=False)
    status = serializers.ChoiceField(choices=ConversationStatus.choices, required=False)
    participant = ParticipantField(
        required=False,
        max_length=MAX_PARTICIPANT_LENGTH,
        help_text="A phone number or e-mail address; normalised before matching.",
    )
