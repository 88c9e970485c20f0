import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxLengthValidator, MinLengthValidator, ProhibitNullCharactersValidator, URLValidator
from django.utils import timezone
from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import SkipField, empty
from rest_framework.utils.serializer_helpers import BindingDict
from rest_framework.validators import ProhibitSurrogateCharactersValidator

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

    _class_plans: ClassVar[dict[type, tuple["_FieldPlan", ...] | None]] = {}

    def run_validation(self, data=empty):
        """DRF's validation, the same result, with less Python for a payload that passes: a JSON object
        whose fields each validate is read field by field without DRF's per-field bookkeeping, and a
        plain string for a text field is checked in a few comparisons instead of four validator
        calls. Anything else (a value some field refuses, a ``validate()`` that raises, a QueryDict, a
        context or ``partial``) runs DRF's own path from the start, so every error is DRF's, worded
        and shaped as before. tests/core/test_fast_validation.py compares both on generated payloads."""
        plan = self._plan() if type(data) is dict and not (self._context or self.partial) else None
        if plan is not None:
            validated = self._passed(plan, data)
            if validated is not None:
                return validated
        return super().run_validation(data)

    def _passed(self, plan: tuple["_FieldPlan", ...], data: dict[str, Any]) -> Any | None:
        """The validated data when every step passes; None at the first problem (DRF's path reports it)."""
        attrs: dict[str, Any] = {}
        try:
            for step in plan:
                value = data.get(step.name, empty) if step.read is None else step.read(data)
                if step.text is not None and type(value) is str:
                    value = step.text.clean(value)
                    if value is None:
                        return None
                else:
                    try:
                        value = step.field.run_validation(value)
                    except SkipField:  # absent, with no default: left out, as DRF does
                        continue
                if step.method is not None:
                    value = getattr(self, step.method)(value)
                attrs[step.key] = value
            validated = self.validate(attrs)
        except (ValidationError, DjangoValidationError):
            return None
        assert validated is not None, ".validate() should return the validated data"
        return validated

    def _plan(self) -> tuple["_FieldPlan", ...] | None:
        cls = type(self)
        try:
            return self._class_plans[cls]
        except KeyError:
            plan = self._class_plans[cls] = _plan_for(self)
            return plan


@dataclass(frozen=True, slots=True)
class _TextRules:
    """What a DRF ``CharField`` checks of a string, read off the field once."""

    allow_blank: bool
    trim: bool
    min_length: int | None
    max_length: int | None
    no_nul: bool
    no_surrogates: bool

    def clean(self, value: str) -> str | None:
        """What ``CharField.run_validation`` returns for the string ``value``; None where it would raise."""
        if value == "" or (self.trim and value.strip() == ""):
            return "" if self.allow_blank else None  # DRF returns "" before any validator runs
        if self.trim:
            value = value.strip()
        if self.max_length is not None and len(value) > self.max_length:
            return None
        if self.min_length is not None and len(value) < self.min_length:
            return None
        if self.no_nul and "\x00" in value:
            return None
        if self.no_surrogates and not value.isascii() and _SURROGATE.search(value):
            return None
        return value


_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str  # the key in the payload
    key: str  # the key in the validated data (the field's one-part source)
    field: serializers.Field
    text: _TextRules | None  # a string is checked by these rules; anything else by the field itself
    method: str | None  # the serializer's validate_<name>, if it has one
    #: The field's own ``get_value`` where it reads a payload its own way (a HiddenField reads nothing,
    #: a MultipleChoiceField or a ListField HTML form lists); None: the value under its name.
    read: Callable[[dict[str, Any]], Any] | None


def _plan_for(serializer: serializers.Serializer) -> tuple[_FieldPlan, ...] | None:
    """The steps of the fast path for ``serializer``'s class, or None when it must always take DRF's
    path: a serializer-level validator, a field with a dotted or ``*`` source, or a class that reads
    or checks its payload its own way (``to_internal_value``, ``run_validators`` or
    ``validate_empty_values`` of its own)."""
    cls = type(serializer)
    own_steps = any(
        getattr(cls, name) is not getattr(serializers.Serializer, name)
        for name in ("to_internal_value", "run_validators", "validate_empty_values")
    )
    if own_steps or serializer.validators:
        return None
    steps = []
    for field in serializer._writable_fields:
        name = field.field_name
        if name is None or len(field.source_attrs) != 1 or field.source == "*":
            return None
        method = "validate_" + name
        steps.append(
            _FieldPlan(
                name=name,
                key=field.source_attrs[0],
                field=field,
                text=_text_rules(field),
                method=method if hasattr(serializer, method) else None,
                read=None if type(field).get_value is serializers.Field.get_value else field.get_value,
            )
        )
    return tuple(steps)


#: The text fields whose checks ``_TextRules`` repeats: DRF's CharField, and StrictCharField, which only
#: refuses a value that is not a string (such a value always takes the field's own path).
_TEXT_FIELDS: tuple[type[serializers.CharField], ...] = (serializers.CharField, StrictCharField)


def _text_rules(field: serializers.Field) -> _TextRules | None:
    if type(field) not in _TEXT_FIELDS or field.read_only:
        return None
    assert isinstance(field, serializers.CharField)
    min_length: int | None = None
    max_length: int | None = None
    no_nul = no_surrogates = False
    for validator in field.validators:
        kind = type(validator)
        limit = getattr(validator, "limit_value", None)
        if kind is MaxLengthValidator and type(limit) is int:
            max_length = limit
        elif kind is MinLengthValidator and type(limit) is int:
            min_length = limit
        elif kind is ProhibitNullCharactersValidator:
            no_nul = True
        elif kind is ProhibitSurrogateCharactersValidator:
            no_surrogates = True
        else:
            return None  # a check of its own (a URL, a pattern): the field runs it
    return _TextRules(
        allow_blank=field.allow_blank,
        trim=field.trim_whitespace,
        min_length=min_length,
        max_length=max_length,
        no_nul=no_nul,
        no_surrogates=no_surrogates,
    )


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
