import re
from typing import ClassVar

from django.conf import settings
from django.core.validators import URLValidator
from django.utils import timezone
from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

MAX_URL_LENGTH = 2048


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers instead of silently turning them into text."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, as the schema's ``type: integer`` says: DRF's own field also takes ``"5"``, ``5.0``
    and ``" 5 "``, which schema readers call invalid (schemathesis sends them expecting a 400)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


#: An integer written in a query string: ASCII digits, an optional minus sign, nothing else.
_QUERY_INTEGER = re.compile(r"-?[0-9]+")


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter written as digits: DRF's own field also reads ``5.0``, ``+5``, ``1_0``,
    `` 5`` and non-ASCII digits as integers, which schema readers call invalid."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or len(data) > self.MAX_STRING_LENGTH or not _QUERY_INTEGER.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class AttachmentsField(serializers.ListField):
    """A list of http(s) URLs, at most ``MAX_ATTACHMENTS``; ``null`` means none."""

    child = StrictCharField(max_length=MAX_URL_LENGTH, validators=[URLValidator(schemes=["http", "https"])])

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("max_length", settings.MAX_ATTACHMENTS)
        super().__init__(**kwargs)


class SharedFieldsSerializer(serializers.Serializer):
    """An input serializer whose fields depend on nothing of the request (no context, never partial):
    they are built and bound once per class, instead of DRF deep-copying every declared field (running
    each field's ``__init__`` again) for every serializer made, which is every webhook and every send.
    Validation only reads fields (a problem is raised, never stored on the field), so threads share
    them. Given a context or ``partial``, a serializer gets DRF's own per-instance fields. Not for a
    serializer nested as a field of another: its fields' ``root`` is its own prototype, not the parent."""

    _class_fields: ClassVar[dict[type, BindingDict]] = {}

    @cached_property
    def fields(self) -> BindingDict:
        if self._context or self.partial:
            return serializers.Serializer.fields.func(self)  # type: ignore[attr-defined]
        fields = self._class_fields.get(type(self))
        if fields is None:
            # Bound to a serializer of their own, with no data, context or partial of any request.
            prototype = type(self)()
            fields = self._class_fields[type(self)] = serializers.Serializer.fields.func(prototype)  # type: ignore[attr-defined]
        return fields


class MessageFieldsSerializer(SharedFieldsSerializer):
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
