from rest_framework import serializers

from conversations.models import Channel, Conversation, ConversationStatus
from core.pagination import PageQuerySerializer


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
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    status = serializers.ChoiceField(choices=ConversationStatus.choices, required=False)
    participant = serializers.CharField(
        required=False, max_length=320, help_text="A phone number or e-mail address; normalised before matching."
    )
