from typing import ClassVar

from django.conf import settings
from django.core.validators import URLValidator
from django.utils import timezone
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject

MAX_URL_LENGTH = 2048


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers instead of silently turning them into text."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class AttachmentsField(serializers.ListField):
    """A list of http(s) URLs, at most ``MAX_ATTACHMENTS``; ``null`` means none."""

    child = StrictCharField(max_length=MAX_URL_LENGTH, validators=[URLValidator(schemes=["http", "https"])])

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("max_length", settings.MAX_ATTACHMENTS)
        super().__init__(**kwargs)


class MessageFieldsSerializer(serializers.Serializer):
    """The fields every message payload has, sent to us or by us: from, to, body, attachments, timestamp."""

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


class SharedReadFieldsMixin:
    """For an output-only serializer whose fields depend on nothing of the request (no context, no
    per-instance arguments): ``to_representation`` uses one set of fields built and bound once per
    class, instead of DRF building (for a ModelSerializer, from the model) and deep-copying every
    field for each object serialized. Same fields, same per-field output; ``.fields`` and the OpenAPI
    schema are DRF's own. The fields are only read, so threads can share them."""

    _shared_read_fields: ClassVar[dict[type, list[serializers.Field]]] = {}

    def to_representation(self, instance):
        fields = self._shared_read_fields.get(type(self))
        if fields is None:
            fields = list(type(self)()._readable_fields)  # type: ignore[attr-defined]
            self._shared_read_fields[type(self)] = fields
        representation = {}
        for field in fields:
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            representation[field.field_name] = None if check_for_none is None else field.to_representation(attribute)
        return representation
