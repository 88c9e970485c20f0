"""How SendGrid's webhook endpoints are documented in the OpenAPI schema."""

from drf_spectacular.utils import OpenApiExample, inline_serializer
from rest_framework import serializers

from providers.sendgrid import InboundEmailSerializer

SendGridEventSerializer = inline_serializer(
    "SendGridEvent",
    {
        "sg_event_id": serializers.CharField(),
        "sg_message_id": serializers.CharField(),
        "event": serializers.CharField(
            help_text="processed, deferred, delivered, bounce, blocked, dropped, open, click, spamreport, ..."
        ),
        "email": serializers.CharField(required=False, allow_blank=True),
        "timestamp": serializers.IntegerField(required=False),
        "reason": serializers.CharField(required=False, allow_blank=True),
        "status": serializers.CharField(required=False, allow_blank=True),
    },
    many=True,
)

INBOUND_DOCS = {
    "summary": "Inbound Email",
    "request": InboundEmailSerializer,
    "examples": [
        OpenApiExample(
            "Inbound email",
            request_only=True,
            value={
                "from": "contact@gmail.com",
                "to": "user@usehatchapp.com",
                "xillio_id": "message-3",
                "body": "<html><body>This is an incoming email with <b>HTML</b> content</body></html>",
                "attachments": ["https://example.com/received-document.pdf"],
                "timestamp": "2024-11-01T14:00:00Z",
            },
        )
    ],
}

EVENTS_DOCS = {
    "summary": "Email events (SendGrid)",
    "description": (
        "A JSON array of SendGrid events. Each event is stored, deduplicated by sg_event_id and applied "
        "on its own: a malformed event is rejected without failing the rest, and a well-formed "
        "request always answers 200 with what became of each event."
    ),
    "request": SendGridEventSerializer,
    "examples": [
        OpenApiExample(
            "Delivered and opened",
            request_only=True,
            value=[
                {
                    "email": "contact@gmail.com",
                    "timestamp": 1730469600,
                    "event": "delivered",
                    "sg_event_id": "ZGVsaXZlcmVkLTAtMjQ",
                    "sg_message_id": "5f0b6ab3a4b1c43d.filter001.1730469600.0",
                    "smtp-id": "<5f0b6ab3a4b1c43d@ismtpd0001p1>",
                },
                {
                    "email": "contact@gmail.com",
                    "timestamp": 1730469700,
                    "event": "open",
                    "sg_event_id": "b3Blbi0wLTI0",
                    "sg_message_id": "5f0b6ab3a4b1c43d.filter001.1730469600.0",
                },
            ],
        )
    ],
}
