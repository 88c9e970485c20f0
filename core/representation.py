"""Rendering many objects with DRF serializers without rebuilding their fields for each one."""

from __future__ import annotations

from typing import ClassVar

from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject


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
