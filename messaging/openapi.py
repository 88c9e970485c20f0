"""What the OpenAPI schema says about message payloads beyond their fields' types.

``MessagePayloadSerializer.validate`` enforces rules across fields; the schema states them as far as
JSON Schema can, so that a request the schema calls valid is one the service accepts: the address
format of the endpoint's channel, the channel's body length limit, http(s) attachment URLs, and "a
body that is not blank, or at least one attachment". Loaded by ``MessagingConfig.ready``.
"""

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from conversations.channels import CHANNELS
from core.openapi import (
    HTTP_URL_FORMAT,
    NOT_BLANK_PATTERN,
    RATE_LIMIT_RESPONSES,
    WRITE_ERROR_RESPONSES,
    ErrorEnvelope,
)
from messaging.serializers import MessageSerializer
from messaging.services import provider_for_channel

_ATTACHMENT_DESCRIPTION = "An http(s) URL with a host name (with a top-level domain) or an IP address."


class MessagePayloadSchema(OpenApiSerializerExtension):
    """Per-channel endpoints: the channel's address format, types and body limit, from the registry."""

    target_class = "messaging.serializers.MessagePayloadSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction != "request":
            return schema
        if "channel" in schema["properties"]:
            return _any_channel_schema(schema)
        return _channel_schema(schema, channel=self.target.channel)


class ScaffoldInboundSchema(MessagePayloadSchema):
    """The scaffold's inbound webhooks (providers/scaffold.py) follow their channel's rules too."""

    target_class = "providers.scaffold.ScaffoldInboundSerializer"


def _any_channel_schema(schema: dict) -> dict:
    """POST /api/messages: one complete variant per channel, told apart by ``channel`` (oneOf), so
    each channel's address format, types and body limit are stated as for its own endpoint."""
    variants = []
    for name, spec in CHANNELS.items():
        properties = {key: dict(value) for key, value in schema["properties"].items()}
        variant = _channel_schema({"type": "object", "properties": properties}, channel=name)
        variant["title"] = f"Send on {name}"
        # Patterns rather than one-value enums, which drf-spectacular would turn into a component each.
        properties["channel"] = {"type": "string", "pattern": f"^{name}$"}
        properties["type"] = {"type": "string", "pattern": f"^({'|'.join(spec.message_types)})$", "nullable": True}
        variant["required"] = ["channel", "to"] + ([] if spec.sender_setting else ["from"])
        if not spec.sender_setting:
            properties["from"].pop("nullable", None)
        variants.append(variant)
    return {"oneOf": variants, "description": schema.get("description", "")}


def _channel_schema(schema: dict, *, channel: str) -> dict:
    spec = CHANNELS[channel]
    properties = schema["properties"]
    rule = spec.address
    for name, role in (("from", "Sender"), ("to", "Recipient")):
        properties[name] = dict(properties[name])
        if rule.schema_format:
            properties[name]["format"] = rule.schema_format
        if rule.schema_pattern:
            properties[name]["pattern"] = rule.schema_pattern
        properties[name]["description"] = f"{role}: {rule.description}."
    properties["attachments"] = {**properties["attachments"], "items": dict(properties["attachments"]["items"])}
    properties["attachments"]["items"]["format"] = HTTP_URL_FORMAT
    properties["attachments"]["items"]["description"] = _ATTACHMENT_DESCRIPTION
    limit = spec.body_limit
    properties["body"] = dict(properties["body"])
    properties["body"]["maxLength"] = limit
    properties["body"]["description"] = (
        f"At most {limit} characters. May be blank or absent only when attachments are given."
    )
    schema["anyOf"] = [
        {"required": ["body"], "properties": {"body": {"type": "string", "pattern": NOT_BLANK_PATTERN}}},
        {"required": ["attachments"], "properties": {"attachments": {"type": "array", "minItems": 1}}},
    ]
    return schema


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NOT_BLANK_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description="Same key and body: the original message, nothing sent again. Same key, other body: 422.",
)

PREFER_HEADER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "`respond-async`: store the message pending and answer 202 at once (with `Preference-Applied: "
        "respond-async`); the outbox worker delivers it. Always so with SEND_MODE=queue."
    ),
)

SEND_RESPONSES = {
    201: OpenApiResponse(MessageSerializer, "Sent: the provider accepted the message."),
    202: OpenApiResponse(
        MessageSerializer,
        "Pending: queued for the outbox (`Prefer: respond-async` or SEND_MODE=queue), or a transient provider "
        "failure with a retry scheduled.",
    ),
    502: OpenApiResponse(
        MessageSerializer,
        "Failed: the provider rejected the message for good (with the mock providers: `_forceError` with any "
        "4xx code but 429; 429 and 5xx are transient and answer 202).",
    ),
    409: OpenApiResponse(
        ErrorEnvelope, "A repeat of an idempotent send whose original is still on its first attempt; retry later."
    ),
    422: OpenApiResponse(ErrorEnvelope, "Idempotency key reused with another body."),
    **WRITE_ERROR_RESPONSES,
    **RATE_LIMIT_RESPONSES,
}

SMS_EXAMPLE = OpenApiExample(
    "MMS",
    request_only=True,
    value={
        "from": "+12016661234",
        "to": "+18045551234",
        "type": "mms",
        "body": "Hello! This is a test MMS message with attachment.",
        "attachments": ["https://example.com/image.jpg"],
        "timestamp": "2024-11-01T14:00:00Z",
    },
)
FORCED_ERROR_EXAMPLE = OpenApiExample(
    "Transient failure once (answers 202, retried by the outbox)",
    request_only=True,
    value={
        "from": "+12016661234",
        "to": "+18045551234",
        "body": "Retry me",
        "_forceError": {"code": 503, "times": 1},
    },
)
EMAIL_EXAMPLE = OpenApiExample(
    "Email",
    request_only=True,
    value={
        "from": "user@usehatchapp.com",
        "to": "contact@gmail.com",
        "body": "Hello! This is a test email message with <b>HTML</b> formatting.",
        "attachments": ["https://example.com/document.pdf"],
        "timestamp": "2024-11-01T14:00:00Z",
    },
)
SENT_EXAMPLE = OpenApiExample(
    "Sent",
    response_only=True,
    status_codes=["201"],
    value={
        "id": 1,
        "conversation_id": 1,
        "direction": "outbound",
        "type": "mms",
        "from": "+12016661234",
        "to": "+18045551234",
        "body": "Hello! This is a test MMS message with attachment.",
        "attachments": ["https://example.com/image.jpg"],
        "status": "sent",
        "provider": provider_for_channel("sms").name,
        "provider_message_id": "MM5f0b6ab3a4b1c43d2e0f9f8a7b6c5d4e",
        "client_message_id": None,
        "timestamp": "2024-11-01T14:00:00Z",
        "attempts": 1,
        "next_attempt_at": None,
        "error": None,
        "created_at": "2026-11-22T10:00:00.123456Z",
        "updated_at": "2026-11-22T10:00:00.345678Z",
    },
)


ANY_CHANNEL_EXAMPLES = [
    OpenApiExample(
        "WhatsApp (from defaults to WHATSAPP_PHONE_NUMBER)",
        request_only=True,
        value={"channel": "whatsapp", "to": "+14155550123", "body": "Merhaba!", "client_message_id": "order-42-1"},
    ),
    OpenApiExample(
        "Instagram",
        request_only=True,
        value={"channel": "instagram", "to": "6789012345", "body": "Thanks for reaching out!"},
    ),
    OpenApiExample(
        "SMS",
        request_only=True,
        value={"channel": "sms", "from": "+12016661234", "to": "+18045551234", "body": "Hello!"},
    ),
]
