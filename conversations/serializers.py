from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from conversations.channels import channel_choices
from conversations.models import Conversation, ConversationStatus
from core.fields import QueryIntegerField
from core.openapi import NOT_BLANK_PATTERN, PHONE_OR_EMAIL_FORMAT
from core.pagination import PageQuerySerializer
from core.representation import PlannedRepresentation

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
    """A phone number, an e-mail address or a WhatsApp/Instagram user id; anything else is a 400 (invalid_address)."""


class ConversationSerializer(PlannedRepresentation, serializers.ModelSerializer):
    """A conversation: one thread between two addresses on one channel, with its summary."""

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


class QueryBooleanField(serializers.BooleanField):
    """A boolean query parameter: absent means its default (DRF reads an absent form field as false)."""

    default_empty_html = empty


MAX_QUERY_LENGTH = 200


class ConversationListQuerySerializer(PageQuerySerializer):
    DEFAULT_LIMIT = 20
    MAX_LIMIT = 100

    limit = QueryIntegerField(min_value=1, required=False, help_text="Default 20; above 100 is clamped to 100.")
    channel = serializers.ChoiceField(choices=channel_choices(), required=False)
    status = serializers.ChoiceField(choices=ConversationStatus.choices, required=False)
    participant = ParticipantField(
        required=False,
        max_length=MAX_PARTICIPANT_LENGTH,
        help_text="A phone number, e-mail address or WhatsApp/Instagram user id; normalised before matching.",
    )
    unread = QueryBooleanField(
        required=False, help_text="true: only threads with unread messages; false: only threads without."
    )
    archived = QueryBooleanField(
        default=False, help_text="false (default): archived threads are hidden; true: only archived threads."
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=MAX_QUERY_LENGTH,
        help_text=(
            "Contact or text search: any spelling of a phone number or a fragment of its digits "
            "(`(415) 555-0199`, `5550199`), an e-mail address in any case, or words in message bodies."
        ),
    )


class ConversationDetailQuerySerializer(PageQuerySerializer):
    """Paging of the ``messages`` embedded in a conversation: newest first."""

    DEFAULT_LIMIT = 50
    MAX_LIMIT = 200

    limit = QueryIntegerField(min_value=1, required=False, help_text="Default 50; above 200 is clamped to 200.")
