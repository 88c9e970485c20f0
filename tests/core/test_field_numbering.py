"""core.field_numbering: DRF numbers its fields without writing to the Field class on every one made."""

import pytest
from rest_framework import fields, serializers

from core import field_numbering
from messaging.serializers import MessageSerializer, SendSmsSerializer


def test_making_fields_and_serializers_writes_nothing_to_the_field_class():
    """A write to a class drops CPython's method cache entries for it and all its subclasses: every DRF
    field and serializer class. DRF's own __init__ writes Field._creation_counter for each one made."""
    before = fields.Field.__dict__["_creation_counter"]
    first = fields.CharField()
    SendSmsSerializer(data={"from": "+12025550100", "to": "+12025550101", "body": "hi"}).is_valid()
    MessageSerializer()
    last = fields.IntegerField()

    assert fields.Field.__dict__["_creation_counter"] == before
    assert last._creation_counter > first._creation_counter >= before


def test_declared_fields_keep_the_order_they_are_written_in():
    class Later(serializers.Serializer):
        zulu = serializers.CharField()
        alpha = serializers.IntegerField()
        mike = serializers.ListField(child=serializers.CharField())

    assert list(Later().fields) == ["zulu", "alpha", "mike"]
    numbers = [field._creation_counter for field in Later._declared_fields.values()]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 3


def test_a_bare_read_only_field_is_still_refused_as_drf_refuses_it():
    with pytest.raises(AssertionError, match="ReadOnlyField"):
        fields.Field(read_only=True)
    fields.ReadOnlyField()  # its own class: allowed


def test_installing_twice_changes_nothing():
    init = fields.Field.__init__
    field_numbering.install()
    assert fields.Field.__init__ is init
    assert init.__qualname__ == "Field.__init__"
