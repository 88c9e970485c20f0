from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apikeys.models import ApiKey
from tests.apikeys.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


def create_api_key(name: str) -> tuple[str, str]:
    out = StringIO()
    call_command("create_api_key", name, stdout=out)
    return out.getvalue(), out.getvalue().strip().splitlines()[-1].split()[-1]


def revoke_api_key(identifier: str) -> str:
    out = StringIO()
    call_command("revoke_api_key", identifier, stdout=out)
    return out.getvalue()


def test_create_prints_a_key_that_authenticates_with_either_header(api, settings):
    settings.API_AUTH_REQUIRED = True

    output, key = create_api_key("ci")

    row = ApiKey.objects.get()
    assert output.startswith(f'Created API key "ci" (prefix {row.prefix}).')
    assert key.startswith(row.prefix)
    assert api.get("/api/conversations", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert api.get("/api/conversations", HTTP_X_API_KEY=key).status_code == 200


def test_create_stores_the_hash_not_the_key():
    _, key = create_api_key("ci")

    row = ApiKey.objects.get()
    assert key not in {row.key_hash, row.prefix, row.name}
    assert len(row.key_hash) == 64


def test_create_refuses_a_blank_name():
    with pytest.raises(CommandError, match="needs a name"):
        call_command("create_api_key", " ")


def test_revoke_by_prefix_then_the_key_is_refused(api, settings):
    settings.API_AUTH_REQUIRED = True
    _, key = create_api_key("ci")
    prefix = ApiKey.objects.get().prefix

    assert revoke_api_key(prefix) == f'Revoked API key "ci" (prefix {prefix}).\n'

    assert ApiKey.objects.get().revoked_at is not None
    assert api.get("/api/conversations", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401


def test_revoke_by_name():
    api_key = ApiKeyFactory(name="partner")

    revoke_api_key("partner")

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_revoke_by_name_skips_keys_already_revoked():
    ApiKeyFactory(name="partner", revoked_at="2024-01-01T00:00:00Z")
    current = ApiKeyFactory(name="partner")

    revoke_api_key("partner")

    current.refresh_from_db()
    assert current.revoked_at is not None


def test_revoke_refuses_an_ambiguous_name():
    first, second = ApiKeyFactory(name="partner"), ApiKeyFactory(name="partner")

    with pytest.raises(CommandError, match="2 active keys match") as error:
        revoke_api_key("partner")

    assert first.prefix in str(error.value)
    assert second.prefix in str(error.value)
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


def test_revoke_says_when_nothing_matches_or_it_was_already_revoked():
    ApiKeyFactory(name="old", revoked_at="2024-01-01T00:00:00Z")

    with pytest.raises(CommandError, match="No API key"):
        revoke_api_key("nobody")
    with pytest.raises(CommandError, match="already revoked at 2024-01-01 00:00:00 UTC"):
        revoke_api_key("old")
