from django.conf import settings
from django.core.validators import URLValidator
from rest_framework import serializers

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
