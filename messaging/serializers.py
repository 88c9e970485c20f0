from __future__ import annotations

from django.conf import settings
from django.core.validators import URLValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.addresses import InvalidAddress, normalise_address
from conversations.models import Channel
from core.fields import StrictCharField
from core.pagination import PageQuerySerializer
from messaging.models import Message, MessageType
from messaging.types import channel_for_type, infer_message_type
from providers.registry import provider_for_channel

MAX_URL_LENGTH = 2048
MAX_ID_LENGTH = 255


class AttachmentsField(serializers.ListField):
    """A list of http(s) URLs, at most ``MAX_ATTACHMENTS``; ``null`` means none."""

    child = StrictCharField(max_length=MAX_URL_LENGTH, validators=[URLValidator(schemes=["http", "https"])])

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("max_length", settings.MAX_ATTACHMENTS)
        super().__init__(**kwargs)


class MessagePayloadSerializer(serializers.Serializer):
    """Fields every message payload shares, outbound or inbound.

    Validation normalises the addresses for the channel, infers the type and enforces the body rules;
    ``validated_data`` then holds ``from_address``, ``to_address``, ``type`` and ``channel``.
    """

    #: The channel this endpoint serves; a payload that infers another channel is refused.
    channel: str = Channel.SMS

    locals()["from"] = StrictCharField(max_length=320, help_text="Sender address.")
    to = StrictCharField(max_length=320, help_text="Recipient address.")
    body = StrictCharField(allow_blank=True, trim_whitespace=False, required=False, default="")
    attachments = AttachmentsField(help_text="http(s) URLs, at most 10, or null.")
    timestamp = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default_timezone=timezone.get_fixed_timezone(0),
        help_text="ISO-8601; naive values are read as UTC. Defaults to now.",
    )

    def validate(self, attrs):
        raw_from, raw_to = attrs.pop("from"), attrs.pop("to")
        attachments = attrs.get("attachments") or []
        attrs["attachments"] = attachments
        if self.channel == Channel.EMAIL:
            message_type = MessageType.EMAIL
        else:
            message_type = infer_message_type(
                requested_type=attrs.get("type"), from_address=raw_from, to_address=raw_to, attachments=attachments
            )
        if channel_for_type(message_type) != self.channel:
            raise serializers.ValidationError(
                {"type": [f"This endpoint carries {self.channel} messages; this payload is {message_type}."]}
            )
        attrs["type"] = message_type
        attrs["channel"] = self.channel
        errors = {}
        for field, raw in (("from", raw_from), ("to", raw_to)):
            try:
                attrs[f"{field}_address"] = normalise_address(raw, channel=self.channel, field=field)
            except InvalidAddress as exc:
                errors.update(exc.details)
        body = attrs.get("body") or ""
        if not body.strip() and not attachments:
            errors["body"] = ["Must not be blank unless attachments are given."]
        limit = settings.SMS_MAX_BODY_CHARS if self.channel == Channel.SMS else settings.EMAIL_MAX_BODY_CHARS
        if len(body) > limit:
            errors["body"] = [f"Must be at most {limit} characters for {self.channel}; got {len(body)}."]
        if errors:
            raise serializers.ValidationError(errors)
        attrs.setdefault("timestamp", None)  # absent: the service stamps the arrival time
        return attrs


class ForceErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(min_value=400, max_value=599, help_text="HTTP status the provider answers.")
    message = serializers.CharField(required=False, max_length=500)
    times = serializers.IntegerField(
        required=False, min_value=1, max_value=100, help_text="Fail only the first N attempts (default: all)."
    )
    retry_after = serializers.IntegerField(
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
        help_text="Mock providers only: makes the provider fail. Refused (400) with a real provider.",
    )

    def validate__forceError(self, value):  # noqa: N802 - DRF names the hook after the field
        if value is not None and not provider_for_channel(self.channel).simulates_failures:
            raise serializers.ValidationError("Only accepted while this channel uses a mock provider.")
        return value


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
    channel = Channel.SMS
    type = sms_type_field()


class SendEmailSerializer(SendMessageSerializer):
    channel = Channel.EMAIL
    type = email_type_field()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.JSONField(help_text="Provider error code: an HTTP status or a provider code.")
    message = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer):
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

    limit = serializers.IntegerField(min_value=1, required=False, help_text="Default 50; above 200 is clamped to 200.")
    order = serializers.ChoiceField(choices=["asc", "desc"], default="desc", help_text="By timestamp; newest first.")


def normalised_sender(data: object, *, channel: str) -> str | None:
    """The request's ``from`` address normalised for ``channel``, or None when there is no valid one:
    what a send refused for another field is rate-limited under."""
    raw = data.get("from") if isinstance(data, dict) else None
    if not isinstance(raw, str) or len(raw) > 320:
        return None
    try:
        return normalise_address(raw, channel=channel, field="from")
    except (InvalidAddress, ValueError):
        return None
