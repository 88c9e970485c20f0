"""Rendering objects with DRF serializers without DRF's per-object and per-field costs."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, ClassVar

from django.conf import settings
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.fields import is_simple_callable
from rest_framework.settings import api_settings


class PlannedRepresentation:
    """``to_representation`` for an output-only serializer whose fields depend on nothing of the request
    (no context, no per-instance arguments):

    - its readable fields are built and bound once per class, instead of DRF building them (for a
      ModelSerializer, from the model) and deep-copying them for every serializer made, which is every
      object a send answers with;
    - they are turned once per class (and current time zone) into a plan of attribute paths and
      converters, ISO 8601 date-times reading the time zone once instead of per value;
    - each object is then a plain loop of attribute reads and conversions.

    Same fields, same output and key order as DRF's own ``to_representation`` for read-only fields with
    plain sources (tests/core/test_planned_representation.py); ``.fields`` and the OpenAPI schema are
    DRF's. The shared fields are only read, so threads can share them. Mix it in before
    ``serializers.ModelSerializer``."""

    _class_fields: ClassVar[dict[type, list[tuple[str, tuple[str, ...], serializers.Field]]]] = {}
    #: The plans made so far, by class, current time zone and DRF's date-time format: what a plan
    #: depends on. A send answers with one object, so a plan per serializer would be made per request.
    _class_plans: ClassVar[dict[tuple[type, tzinfo | None, str], list[tuple[str, tuple[str, ...], Any]]]] = {}

    def to_representation(self, instance):
        plan = self.__dict__.get("_representation_plan")
        if plan is None:
            key = (
                type(self),
                timezone.get_current_timezone() if settings.USE_TZ else None,
                api_settings.DATETIME_FORMAT,
            )
            plan = self._class_plans.get(key)
            if plan is None:
                plan = self._class_plans[key] = [
                    (name, attrs, _converter(field)) for name, attrs, field in self._fields_of_class()
                ]
            self.__dict__["_representation_plan"] = plan
        data = {}
        for name, attrs, convert in plan:
            value = instance
            for attr in attrs:
                value = getattr(value, attr)
                if callable(value) and is_simple_callable(value):
                    value = value()
            data[name] = None if value is None else convert(value)
        return data

    def _fields_of_class(self) -> list[tuple[str, tuple[str, ...], serializers.Field]]:
        fields = self._class_fields.get(type(self))
        if fields is None:
            prototype: Any = type(self)()
            fields = [(field.field_name, tuple(field.source_attrs), field) for field in prototype._readable_fields]
            self._class_fields[type(self)] = fields
        return fields


def _converter(field: serializers.Field):
    """``field.to_representation``, except for ISO 8601 date-times: DRF looks the current time zone up
    for every value (a context-local read); here it is looked up once per plan, with DRF's output."""
    if type(field) is not serializers.DateTimeField or getattr(field, "format", ISO_8601) != ISO_8601:
        return field.to_representation
    if api_settings.DATETIME_FORMAT != ISO_8601 or hasattr(field, "timezone"):
        return field.to_representation
    zone = field.default_timezone()
    if zone is None:
        return field.to_representation

    def convert(value):
        if not isinstance(value, datetime) or value.tzinfo is None:
            return field.to_representation(value)
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return convert
