from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.addresses import InvalidAddress
from conversations.channels import (
    CHANNELS,
    ChannelSpec,
    channel_choices,
    channel_get,
    message_type_choices,
    message_types,
)
from core.fields import (
    MessageFieldsSerializer,
    QueryIntegerField,
    StrictCharField,
    StrictIntegerField,
)
from core.pagination import PageQuerySerializer
from core.representation import PlannedRepresentation
from messaging.models import Message, MessageType
from messaging.rules import content_check
from providers.registry import provider_get, provider_names_for_channel

MAX_ID_LENGTH = 255


class MessagePayloadSerializer(MessageFieldsSerializer):
    """Fields every message payload shares.

    Validation applies the channel's rules (messaging/rules.py): the type, the addresses normalised for
    the channel, the body rules; ``validated_data`` then holds ``from_address``, ``to_address``,
    ``type`` and ``channel``.
    """

    #: The channel this endpoint serves; a payload that infers another channel is refused.
    channel: str = "sms"

    def channel_spec(self, attrs: dict[str, Any]) -> ChannelSpec:
        return CHANNELS[self.channel]

    def validate(self, attrs):
        spec = self.channel_spec(attrs)
        raw_from = attrs.pop("from", None) or spec.default_sender
        raw_to = attrs.pop("to")
        if raw_from is None:
            raise serializers.ValidationError({"from": [f"This field is required for {spec.name}."]})
        attachments = attrs.get("attachments") or []
        attrs["attachments"] = attachments
        content, errors = content_check(
            spec=spec,
            requested_type=attrs.get("type"),
            raw_from=raw_from,
            raw_to=raw_to,
            body=attrs.get("body") or "",
            attachments=attachments,
        )
        if content is None:
            raise serializers.ValidationError(errors)
        attrs["type"] = content.type
        attrs["channel"] = spec.name
        attrs["from_address"] = content.from_address
        attrs["to_address"] = content.to_address
        attrs.setdefault("timestamp", None)  # absent: the service stamps the arrival time
        return attrs


class ForceErrorSerializer(serializers.Serializer):
    code = StrictIntegerField(min_value=400, max_value=599, help_text="HTTP status the provider answers.")
    message = serializers.CharField(required=False, max_length=500)
    times = StrictIntegerField(
        required=False, min_value=1, max_value=100, help_text="Fail only the first N attempts (default: all)."
    )
    retry_after = StrictIntegerField(
        required=False, min_value=1, max_value=3600, help_text="Seconds the provider asks to wait (Retry-After)."
    )


class SendMessageSerializer(MessagePayloadSerializer):
    client_message_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=MAX_ID_LENGTH,
        help_text="Idempotency key (or send the Idempotency-Key header).",
    )
    _forceError = ForceErrorSerializer(
        required=False,
        allow_null=True,
        help_text="Mock providers only (PROVIDER_MODE=mock): makes the provider fail. Refused (400) otherwise.",
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        forced = attrs.get("_forceError")
        names = provider_names_for_channel(attrs["channel"])
        if forced is not None and not all(provider_get(name).simulates_failures for name in names):
            raise serializers.ValidationError(
                {"_forceError": ["Only accepted while this channel uses a mock provider."]}
            )
        return attrs


def _type_field(choices: list[str], **kwargs) -> serializers.ChoiceField:
    # DRF's default message echoes the input, which may hold characters no JSON or text column takes.
    message = f"Must be one of: {', '.join(choices)}."
    return serializers.ChoiceField(
        choices=choices, required=False, allow_null=True, error_messages={"invalid_choice": message}, **kwargs
    )


def sms_type_field() -> serializers.ChoiceField:
    return _type_field([MessageType.SMS, MessageType.MMS], help_text="Optional; mms when attachments are present.")


def email_type_field() -> serializers.ChoiceField:
    return _type_field([MessageType.EMAIL])


class SendSmsSerializer(SendMessageSerializer):
    channel = "sms"
    type = sms_type_field()


class SendEmailSerializer(SendMessageSerializer):
    channel = "email"
    type = email_type_field()


class SendAnyChannelSerializer(SendMessageSerializer):
    """``POST /api/messages``: the channel is a field, and ``from`` defaults to the channel's business
    identity (WHATSAPP_PHONE_NUMBER, INSTAGRAM_ACCOUNT_ID); sms and email still need it."""

    locals()["channel"] = serializers.ChoiceField(
        choices=channel_choices(),
        error_messages={"invalid_choice": f"Unknown channel; one of: {', '.join(CHANNELS)}."},
        help_text="sms (SMS and MMS), email, whatsapp or instagram.",
    )
    locals()["from"] = StrictCharField(
        max_length=320,
        required=False,
        allow_null=True,
        help_text="Sender; defaults to the channel's business identity.",
    )
    type = serializers.ChoiceField(
        choices=message_type_choices(),
        required=False,
        allow_null=True,
        error_messages={"invalid_choice": f"Must be one of: {', '.join(message_types())}."},
        help_text="Optional; inferred from the channel (mms when an sms carries attachments).",
    )

    def channel_spec(self, attrs: dict[str, Any]) -> ChannelSpec:
        return channel_get(attrs.pop("channel"))


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.JSONField(help_text="Provider error code: an HTTP status or a provider code.")
    message = serializers.CharField()


class MessageSerializer(PlannedRepresentation, serializers.ModelSerializer):
    """A message, sent or received, with its delivery state."""

    conversation_id = serializers.IntegerField(read_only=True)
    locals()["from"] = serializers.CharField(source="from_address", read_only=True)
    to = serializers.CharField(source="to_address", read_only=True)
    attachments = serializers.ListField(child=serializers.CharField(), read_only=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "conversation_id",
            "direction",
            "type",
            "from",
            "to",
            "body",
            "attachments",
            "status",
            "provider",
            "provider_message_id",
            "client_message_id",
            "timestamp",
            "attempts",
            "next_attempt_at",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ErrorDetailSerializer(allow_null=True))
    def get_error(self, message: Message):
        return message.last_error or None


class MessageListQuerySerializer(PageQuerySerializer):
    DEFAULT_LIMIT = 50
    MAX_LIMIT = 200

    limit = QueryIntegerField(min_value=1, required=False, help_text="Default 50; above 200 is clamped to 200.")
    order = serializers.ChoiceField(choices=["asc", "desc"], default="desc", help_text="By timestamp; newest first.")


def request_channel(data: object, *, default: str | None) -> str | None:
    """The channel a send request is for: the endpoint's, or the body's ``channel`` if it names one."""
    if default is not None:
        return default
    channel = data.get("channel") if isinstance(data, dict) else None
    return channel if isinstance(channel, str) and channel in CHANNELS else None


def normalised_sender(data: object, *, channel: str) -> str | None:
    """The request's ``from`` address normalised for ``channel`` (or the channel's business identity),
    or None when there is no valid one: what a send refused for another field is rate-limited under."""
    spec = CHANNELS[channel]
    raw = data.get("from") if isinstance(data, dict) else None
    raw = raw if raw is not None else spec.default_sender
    if not isinstance(raw, str) or len(raw) > 320:
        return None
    try:
        return spec.address.normalise(raw, field="from")
    except (InvalidAddress, ValueError):
        return None
