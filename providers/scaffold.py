"""The inbound message webhook format the service's scaffold defined for SMS/MMS and e-mail:
``{"from", "to", "type", "body", "attachments", "timestamp", <id field>}``, one message per request.

The Twilio-like and SendGrid-like providers deliver inbound messages in it, each with its own id field
(``messaging_provider_id``, ``xillio_id``). Only the payload's shape is checked here; the channel's
rules (addresses, type, body length) are applied by the webhook pipeline from the channel registry.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.errors import ValidationFailed
from core.exceptions import validation_summary
from core.fields import MessageFieldsSerializer, StrictCharField
from providers.base import INBOUND, InboundMessage, RawWebhook, WebhookItem
from providers.payloads import MAX_ID_LENGTH, as_kind, json_object


class ScaffoldInboundSerializer(MessageFieldsSerializer):
    """The fields every scaffold payload shares. ``channel`` (set per provider) lets the schema
    extension in messaging/openapi.py describe the channel's address formats and types."""

    channel: str = ""
    id_field: str = ""


def scaffold_serializer(
    *, name: str, channel: str, id_field: str, types: tuple[str, ...]
) -> type[ScaffoldInboundSerializer]:
    """The scaffold serializer with the provider's id field and the message types it carries."""
    fields: dict[str, Any] = {
        id_field: StrictCharField(max_length=MAX_ID_LENGTH, help_text="The provider's id for this message."),
        # DRF's default message echoes the input, which may hold characters no JSON or text column takes.
        "type": serializers.ChoiceField(
            choices=list(types),
            required=False,
            allow_null=True,
            error_messages={"invalid_choice": f"Must be one of: {', '.join(types)}."},
        ),
        "channel": channel,
        "id_field": id_field,
    }
    return type(name, (ScaffoldInboundSerializer,), fields)


def parse_scaffold_inbound(
    raw: RawWebhook, *, serializer_class: type[ScaffoldInboundSerializer], provider: str
) -> list[WebhookItem]:
    """One inbound message per request; a payload that does not read is a 400 for the whole request."""
    serializer = serializer_class(data=json_object(raw))
    if not serializer.is_valid():
        raise ValidationFailed(validation_summary(serializer.errors), details=serializer.errors)
    data = serializer.validated_data
    inbound = InboundMessage(
        channel=serializer_class.channel,
        type=data.get("type"),
        provider=provider,
        provider_message_id=data[serializer_class.id_field],
        from_address=data["from"],
        to_address=data["to"],
        body=data["body"],
        attachments=data.get("attachments") or [],
        timestamp=data.get("timestamp"),
    )
    return [WebhookItem(raw=as_kind(raw, INBOUND), kind=INBOUND, parsed=inbound, event_id=inbound.provider_message_id)]
