"""The answers every webhook endpoint gives, for the OpenAPI schema."""

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from webhooks.models import WebhookOutcome

WebhookAck = inline_serializer(
    "WebhookAck",
    {
        "status": serializers.ChoiceField(
            choices=["processed", "duplicate", "orphan"],
            help_text="orphan: a status for a message not known yet; kept and applied when it is.",
        ),
        "event_id": serializers.CharField(),
        "message_id": serializers.IntegerField(allow_null=True),
    },
)
EventBatchAck = inline_serializer(
    "EventBatchAck",
    {
        "received": serializers.IntegerField(),
        "processed": serializers.IntegerField(),
        "duplicate": serializers.IntegerField(),
        "orphan": serializers.IntegerField(),
        "rejected": serializers.IntegerField(),
        "error": serializers.IntegerField(),
        "events": inline_serializer(
            "EventResult",
            {
                "index": serializers.IntegerField(),
                "event_id": serializers.CharField(allow_null=True),
                "status": serializers.ChoiceField(choices=WebhookOutcome.values),
                "message_id": serializers.IntegerField(allow_null=True),
                "error": serializers.CharField(required=False),
            },
            many=True,
        ),
    },
)
