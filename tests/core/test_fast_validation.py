"""core.fields.SharedFieldsSerializer.run_validation: the fast path gives exactly what DRF's validation
gives (the validated data, value types and key order included), and leaves every refusal to DRF."""

import random
from unittest import mock

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from core.fields import SharedFieldsSerializer, StrictCharField
from core.pagination import PageQuerySerializer
from messaging.serializers import SendAnyChannelSerializer, SendEmailSerializer, SendSmsSerializer
from providers.sendgrid import InboundEmailSerializer
from providers.twilio import InboundSmsSerializer


class Texts(SharedFieldsSerializer):
    """Every text-field setting the fast path reads, and fields it leaves to DRF."""

    plain = serializers.CharField(max_length=6, min_length=2)
    blank = serializers.CharField(allow_blank=True, required=False)
    kept = StrictCharField(allow_blank=True, trim_whitespace=False, required=False, default="-")
    nullable = StrictCharField(allow_null=True, required=False, max_length=4)
    pattern = serializers.RegexField(r"^[a-z]+$", required=False)  # a validator of its own: DRF's path
    count = serializers.IntegerField(required=False, min_value=0)
    renamed = serializers.CharField(source="other", required=False)
    hidden = serializers.HiddenField(default="from the server")  # reads nothing from the payload
    choices = serializers.MultipleChoiceField(choices=["a", "b"], required=False)
    nested = serializers.DictField(child=serializers.IntegerField(), required=False)

    def validate_blank(self, value):
        if value == "no":
            raise serializers.ValidationError("Not that.")
        return value.upper()


STRINGS = [
    "",
    " ",
    "  x  ",
    "ab",
    "abcdef",
    "abcdefg",
    " abcdef ",
    "no",
    "x\x00y",
    "\ud800",
    "a\udfffb",
    "é",
    "😀 hi",
    "\u00a0",
    "\u2003ab\u2003",
    "+12025550123",
    " +1 (202) 555-0123 ",
    "12025550123",
    "user@example.com",
    "Someone <user@example.com>",
    "sms",
    "mms",
    "email",
    "whatsapp",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "not a date",
    "a" * 320,
    "a" * 321,
    " " + "a" * 320,
    "x" * 1700,
]
OTHERS = [
    None,
    0,
    5,
    -1,
    5.5,
    True,
    False,
    [],
    {},
    ["https://example.com/a.png"],
    ["ftp://x"],
    {"code": 500},
    {"code": "x"},
]


def drf_outcome(serializer_class, data):
    """DRF's own validation of ``data``, bypassing the fast path."""
    serializer = serializer_class(data=data)
    try:
        value = serializers.Serializer.run_validation(serializer, data)
    except ValidationError as exc:
        return False, exc.detail
    return True, _typed(value)


def outcome(serializer_class, data):
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return True, _typed(serializer.validated_data)
    return False, serializer.errors


def _typed(data):
    return [(key, value, type(value)) for key, value in data.items()]


#: Values a field of that name usually takes, so that generated payloads are often accepted.
LIKELY = {
    "from": ["+12025550123", " +1 (202) 555-0123 ", "user@example.com", "Someone <user@example.com>"],
    "to": ["+12025550124", "12025550124", "other@example.com"],
    "type": ["sms", "mms", "email", None],
    "channel": ["sms", "email", "whatsapp", "instagram"],
    "body": ["hi", "  spaced  ", "", "😀 hi"],
    "attachments": [None, [], ["https://example.com/a.png"]],
    "timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", None],
    "client_message_id": ["key-1", " key ", None],
    "_forceError": [None, {"code": 500}],
    "messaging_provider_id": ["m-1", " m-2 "],
    "xillio_id": ["x-1"],
    "page": ["1", "2"],
    "page_size": ["10", "100"],
    # Texts
    "plain": ["ab", " abc ", "abcdef"],
    "blank": ["", "x", " y "],
    "kept": ["", " k "],
    "nullable": [None, "abcd"],
    "pattern": ["abc"],
    "count": [0, 3],
    "renamed": ["r"],
    "hidden": ["from the client"],
    "choices": [["a"], ["a", "b"]],
    "nested": [{"n": 1}, {}],
}


def payloads(serializer_class, count, seed):
    rng = random.Random(seed)
    names = [*serializer_class().fields, "extra"]
    for _ in range(count):
        payload = {}
        for name in names:
            if rng.random() < 0.85:
                roll = rng.random()
                pool = LIKELY.get(name, STRINGS) if roll < 0.75 else STRINGS if roll < 0.93 else OTHERS
                payload[name] = rng.choice(pool)
        yield payload


CLASSES = [
    Texts,
    SendSmsSerializer,
    SendEmailSerializer,
    SendAnyChannelSerializer,
    InboundSmsSerializer,
    InboundEmailSerializer,
    PageQuerySerializer,
]


@pytest.mark.parametrize("serializer_class", CLASSES, ids=lambda cls: cls.__name__)
def test_generated_payloads_validate_as_drf_validates_them(serializer_class):
    accepted = 0
    for index, payload in enumerate(payloads(serializer_class, 3000, seed=serializer_class.__name__)):
        expected = drf_outcome(serializer_class, payload)
        assert outcome(serializer_class, payload) == expected, (index, payload)
        accepted += expected[0]
    assert accepted > 0  # the generator reaches the accepting path, not only refusals


VALID = {
    SendSmsSerializer: {"from": " +1 202 555 0123", "to": "+12025550124", "body": "  hello  "},
    SendAnyChannelSerializer: {"channel": "email", "from": "a@example.com", "to": "b@example.com", "body": "x"},
    InboundSmsSerializer: {
        "from": "+12025550123",
        "to": "+12025550124",
        "type": "sms",
        "messaging_provider_id": "m-1",
        "body": "hi",
        "attachments": None,
        "timestamp": "2026-01-01T00:00:00Z",
    },
}


@pytest.mark.parametrize("serializer_class", VALID, ids=lambda cls: cls.__name__)
def test_a_plain_payload_takes_the_fast_path(serializer_class):
    """Passed without DRF's per-field loop, with the result DRF gives."""
    data = VALID[serializer_class]
    expected = drf_outcome(serializer_class, data)
    assert expected[0]
    with mock.patch.object(serializers.Serializer, "to_internal_value", side_effect=AssertionError("DRF's path")):
        assert outcome(serializer_class, data) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"from": "+12025550123", "to": "+12025550124", "body": "x" * 1601},  # the channel's body limit (validate)
        {"from": "+12025550123", "to": 12025550124, "body": "x"},  # a number for a text field
        {"from": "+12025550123", "to": "+1202555012\x00", "body": "x"},  # a NUL
        {"from": "+12025550123", "body": "x"},  # a required field missing
    ],
)
def test_a_refused_payload_gets_drfs_errors(data):
    drf_calls = []
    drf_to_internal_value = serializers.Serializer.to_internal_value

    def spy(self, data):
        drf_calls.append(data)
        return drf_to_internal_value(self, data)

    with mock.patch.object(serializers.Serializer, "to_internal_value", spy):
        valid, errors = outcome(SendSmsSerializer, data)
    assert not valid
    assert drf_calls == [data]
    assert (valid, errors) == drf_outcome(SendSmsSerializer, data)


class OwnReading(SharedFieldsSerializer):
    """A serializer that reads its payload its own way: its to_internal_value must run."""

    name = serializers.CharField()

    def to_internal_value(self, data):
        return {**super().to_internal_value(data), "read": "its own way"}


def test_a_serializer_that_reads_its_payload_its_own_way_keeps_doing_so():
    serializer = OwnReading(data={"name": "x"})
    assert serializer.is_valid()
    assert serializer.validated_data == {"name": "x", "read": "its own way"}


def test_a_serializer_with_a_context_or_partial_takes_drfs_path():
    with mock.patch.object(serializers.Serializer, "to_internal_value", side_effect=AssertionError("DRF's path")):
        with pytest.raises(AssertionError, match="DRF's path"):
            Texts(data={"plain": "abc"}, context={"request": None}).is_valid()
        with pytest.raises(AssertionError, match="DRF's path"):
            Texts(data={"plain": "abc"}, partial=True).is_valid()
