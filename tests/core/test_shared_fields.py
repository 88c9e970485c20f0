"""core.fields.SharedFieldsSerializer: input fields built once per class, with DRF's own validation results."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework import serializers

from core.fields import SharedFieldsSerializer
from messaging.serializers import SendAnyChannelSerializer, SendSmsSerializer


class Shared(SharedFieldsSerializer):
    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=1, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=3), required=False)


class Copied(serializers.Serializer):
    """The same fields with DRF's per-instance copies."""

    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=1, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=3), required=False)


PAYLOADS = [
    {"name": "ok"},
    {"name": "too long"},
    {"count": 0},
    {"name": "a", "count": "x", "tags": ["abcd", 5, "ok"]},
    {"name": None, "tags": "not a list"},
    [],
]


def outcome(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    valid = serializer.is_valid()
    return valid, serializer.validated_data if valid else serializer.errors


def test_fields_are_built_once_per_class():
    assert Shared(data={}).fields is Shared(data={}).fields
    assert Copied(data={}).fields is not Copied(data={}).fields


@pytest.mark.parametrize("data", PAYLOADS)
def test_validation_is_drfs(data):
    assert outcome(Shared, data) == outcome(Copied, data)


def test_a_serializer_with_a_context_or_partial_gets_its_own_fields():
    shared = Shared(data={}).fields
    assert Shared(data={}, context={"request": None}).fields is not shared
    assert Shared(data={}, partial=True).fields is not shared
    assert outcome(Shared, {"count": 2}, partial=True) == outcome(Copied, {"count": 2}, partial=True)


def test_threads_validating_at_once_each_get_their_own_result():
    payloads = [{"name": f"n{i % 7}", "count": i % 3, "tags": ["x" * (i % 5)]} for i in range(400)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        shared = list(pool.map(lambda data: outcome(Shared, data), payloads))

    assert shared == [outcome(Copied, data) for data in payloads]


@pytest.mark.parametrize(
    "data",
    [
        {"from": "+12025550101", "to": "+12025550102", "body": "hi"},
        {"from": "+12025550101", "to": "+12025550102", "body": "hi", "attachments": ["ftp://x"]},
        {"to": "+12025550102", "body": 5, "_forceError": {"code": "500"}},
    ],
)
def test_the_send_serializers_validate_as_before(data):
    """The send serializers share their fields; a copy of them per serializer (DRF's way) agrees."""

    class PerInstance(SendSmsSerializer):
        @property
        def fields(self):
            return serializers.Serializer.fields.func(self)

    assert outcome(SendSmsSerializer, data) == outcome(PerInstance, data)
    assert outcome(SendAnyChannelSerializer, {**data, "channel": "sms"})[0] == outcome(PerInstance, data)[0]
