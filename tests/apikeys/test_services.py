from datetime import timedelta

import pytest
from django.utils import timezone

from apikeys.keys import key_digest, key_generate
from apikeys.models import ApiKey
from apikeys.services import api_key_authenticate, api_key_create, api_key_revoke
from core.errors import ValidationFailed
from tests.apikeys.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


def test_create_stores_the_hash_and_a_prefix_never_the_key():
    api_key, key = api_key_create(name="  ci  ")

    row = ApiKey.objects.get()
    assert key.startswith("ms_")
    assert len(key) >= 3 + 43, "32 random bytes, URL-safe base64"
    assert row.name == "ci"
    assert row.key_hash == key_digest(key=key)
    assert row.prefix == key[:11]
    assert key not in {row.name, row.prefix, row.key_hash}
    assert (row.last_used_at, row.revoked_at) == (None, None)
    assert api_key == row


def test_every_created_key_is_different():
    keys = {api_key_create(name="ci")[1] for _ in range(5)}
    assert len(keys) == 5


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_create_refuses_a_blank_or_overlong_name(name):
    with pytest.raises(ValidationFailed):
        api_key_create(name=name)
    assert not ApiKey.objects.exists()


def test_authenticate_finds_the_key_it_was_given(key):
    api_key = api_key_authenticate(presented=key)

    assert api_key is not None
    assert api_key.key_hash == key_digest(key=key)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "ms_",
        "not-a-key",
        "ms_" + "a" * 43 + " ",
        "ms_" + "é" * 43,
        "ms_" + "a" * 500,
    ],
)
def test_authenticate_refuses_malformed_keys(key, presented):
    assert api_key_authenticate(presented=presented) is None


def test_authenticate_refuses_an_unknown_key(key):
    assert api_key_authenticate(presented=key_generate()) is None
    assert api_key_authenticate(presented=key[:-1] + ("A" if key[-1] != "A" else "B")) is None


def test_authenticate_refuses_a_revoked_key(key):
    api_key = ApiKey.objects.get()

    assert api_key_revoke(api_key=api_key) is True

    assert api_key_authenticate(presented=key) is None


def test_revoking_twice_keeps_the_first_date():
    api_key = ApiKeyFactory(revoked_at=timezone.now() - timedelta(days=1))
    first = api_key.revoked_at

    assert api_key_revoke(api_key=api_key) is False
    assert api_key.revoked_at == first


def test_last_used_at_is_set_on_first_use(key):
    before = timezone.now()

    api_key_authenticate(presented=key)

    assert ApiKey.objects.get().last_used_at >= before


def test_last_used_at_is_written_at_most_once_a_minute(key):
    recent = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.update(last_used_at=recent)

    api_key_authenticate(presented=key)

    assert ApiKey.objects.get().last_used_at == recent


def test_last_used_at_moves_on_once_a_minute_has_passed(key):
    stale = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.update(last_used_at=stale)

    api_key_authenticate(presented=key)

    assert ApiKey.objects.get().last_used_at > stale + timedelta(minutes=1)


def test_a_fresh_last_used_at_costs_no_write(key, django_assert_num_queries):
    ApiKey.objects.update(last_used_at=timezone.now())

    with django_assert_num_queries(1):  # the lookup, no UPDATE
        api_key_authenticate(presented=key)
