"""How Meta's webhook endpoints are documented in the OpenAPI schema."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, inline_serializer
from rest_framework import serializers

from core.openapi import NOT_BLANK_PATTERN

GraphDeliverySerializer = inline_serializer(
    "MetaWebhookDelivery",
    {
        "object": serializers.ChoiceField(choices=["whatsapp_business_account", "instagram"]),
        "entry": serializers.ListField(
            child=serializers.JSONField(),
            help_text="WhatsApp: entry[].changes[].value.messages[] / .statuses[]; "
            "Instagram: entry[].messaging[] with message, read or delivery.",
        ),
    },
)

_SCOPED_ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}


def _mock_variant(channel: str, sender: dict, text_limit: int) -> dict:
    return {
        "type": "object",
        "title": f"A {channel} event",
        "required": ["eventId", "channel", "from", "text"],
        "properties": {
            "eventId": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": NOT_BLANK_PATTERN,
                "description": "Unique per provider; a repeat changes nothing.",
            },
            "channel": {"type": "string", "pattern": f"^{channel}$"},
            "from": {**sender, "description": "The customer: a WhatsApp number or user id, or an Instagram user id."},
            "text": {"type": "string", "minLength": 1, "maxLength": text_limit, "pattern": NOT_BLANK_PATTERN},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "ISO-8601; absent or null: now.",
            },
        },
    }


#: Seed 004's payload; the sender's rule depends on the channel, so one variant per channel.
MOCK_META_SCHEMA = {
    "oneOf": [
        _mock_variant("whatsapp", {"type": "string", "format": "whatsapp-address"}, 4096),
        _mock_variant("instagram", _SCOPED_ID, 1000),
    ]
}

GRAPH_DOCS = {
    "summary": "WhatsApp Cloud API and Instagram deliveries (Meta)",
    "description": (
        "Meta's webhook formats, signed with X-Hub-Signature-256 (HMAC-SHA256 of the raw body with "
        "META_APP_SECRET). Every message and status in a delivery is stored, deduplicated (messages by "
        "wamid / mid, statuses by id + status) and applied on its own; a bad item never fails the rest. "
        "GET answers Meta's verification handshake."
    ),
    "request": GraphDeliverySerializer,
    "examples": [
        OpenApiExample(
            "WhatsApp message and status",
            request_only=True,
            value={
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "102290129340398",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "12015550100",
                                        "phone_number_id": "106540352242922",
                                    },
                                    "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "14155550123"}],
                                    "messages": [
                                        {
                                            "from": "14155550123",
                                            "id": "wamid.HBgLMTQxNTU1NTAxMjMVAgASGBQzQUY0",
                                            "timestamp": "1730469600",
                                            "type": "text",
                                            "text": {"body": "Is my order on its way?"},
                                        }
                                    ],
                                    "statuses": [
                                        {
                                            "id": "wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI4",
                                            "status": "delivered",
                                            "timestamp": "1730469601",
                                            "recipient_id": "14155550123",
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            },
        ),
        OpenApiExample(
            "Instagram message",
            request_only=True,
            value={
                "object": "instagram",
                "entry": [
                    {
                        "id": "17841400000000000",
                        "time": 1730469600000,
                        "messaging": [
                            {
                                "sender": {"id": "6789012345"},
                                "recipient": {"id": "17841400000000000"},
                                "timestamp": 1730469600000,
                                "message": {"mid": "m_aGVsbG8tZnJvbS1pbnN0YWdyYW0", "text": "Hi there"},
                            }
                        ],
                    }
                ],
            },
        ),
    ],
}

HANDSHAKE_DOCS = {
    "summary": "Meta's verification handshake",
    "description": "Answers `hub.challenge` as text/plain when `hub.verify_token` equals META_VERIFY_TOKEN; else 403.",
    "parameters": [
        OpenApiParameter("hub.mode", str, OpenApiParameter.QUERY, required=True, enum=["subscribe"]),
        OpenApiParameter("hub.verify_token", str, OpenApiParameter.QUERY, required=True),
        OpenApiParameter("hub.challenge", str, OpenApiParameter.QUERY, required=True),
    ],
}

MOCK_DOCS = {
    "summary": "Seed 004's Meta-like gateway event",
    "description": (
        "`{eventId, channel, from, text, timestamp}`, signed like Meta's own webhooks. One transaction "
        "stores the event, creates or updates the conversation, inserts the message and counts it unread; "
        "a repeated eventId answers 200 and changes nothing."
    ),
    "request": {"application/json": MOCK_META_SCHEMA},
    "examples": [
        OpenApiExample(
            "Inbound WhatsApp",
            request_only=True,
            value={
                "eventId": "evt_123",
                "channel": "whatsapp",
                "from": "user-123",
                "text": "Hello",
                "timestamp": "2025-01-01T10:00:00Z",
            },
        )
    ],
}
