import re

import pytest
from django.urls import reverse

from apikeys.keys import key_digest, key_generate
from apikeys.models import ApiKey
from tests.apikeys.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:apikeys_apikey_add")
LIST_URL = reverse("admin:apikeys_apikey_changelist")


def shown_key(response) -> str:
    match = re.search(r'<code id="api-key"[^>]*>(ms_[A-Za-z0-9_-]+)</code>', response.content.decode())
    assert match, "the new key is on the page"
    return match.group(1)


def test_the_add_form_asks_only_for_a_name(admin_client):
    form = admin_client.get(ADD_URL).context["adminform"].form

    assert list(form.fields) == ["name"]


def test_adding_a_key_shows_it_once_and_stores_only_its_hash(admin_client, api, settings):
    response = admin_client.post(ADD_URL, {"name": "support tool"})

    assert response.status_code == 200
    key = shown_key(response)
    assert "no-store" in response["Cache-Control"]
    row = ApiKey.objects.get()
    assert (row.name, row.key_hash, row.prefix) == ("support tool", key_digest(key=key), key[:11])
    for page in [LIST_URL, reverse("admin:apikeys_apikey_change", args=[row.pk])]:
        content = admin_client.get(page).content.decode()
        assert key not in content
        assert row.prefix in content
    settings.API_AUTH_REQUIRED = True
    assert api.get("/api/conversations", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_the_key_is_not_kept_in_a_message_or_the_session(admin_client):
    response = admin_client.post(ADD_URL, {"name": "ci"})
    key = shown_key(response)

    assert key not in str(response.cookies)
    assert key not in str(dict(admin_client.session))


def test_a_blank_name_is_refused(admin_client):
    response = admin_client.post(ADD_URL, {"name": "  "})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_keys_are_read_only_and_cannot_be_deleted(admin_client):
    api_key = ApiKeyFactory(name="before")
    change_url = reverse("admin:apikeys_apikey_change", args=[api_key.pk])

    assert admin_client.get(change_url).status_code == 200
    assert admin_client.post(change_url, {"name": "after"}).status_code == 403
    assert admin_client.post(reverse("admin:apikeys_apikey_delete", args=[api_key.pk])).status_code == 403
    api_key.refresh_from_db()
    assert api_key.name == "before"


def test_the_revoke_action_revokes_the_selected_keys(admin_client, api, settings):
    settings.API_AUTH_REQUIRED = True
    key, other_key = key_generate(), key_generate()
    selected, other = ApiKeyFactory(key=key), ApiKeyFactory(key=other_key)

    response = admin_client.post(LIST_URL, {"action": "revoke", "_selected_action": [selected.pk]}, follow=True)

    assert "Revoked 1 API key(s)." in response.content.decode()
    selected.refresh_from_db()
    other.refresh_from_db()
    assert selected.revoked_at is not None
    assert other.revoked_at is None
    assert api.get("/api/conversations", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401
    assert api.get("/api/conversations", HTTP_AUTHORIZATION=f"Bearer {other_key}").status_code == 200


def test_the_list_filters_active_and_revoked_keys(admin_client):
    ApiKeyFactory()
    ApiKeyFactory(revoked_at="2024-01-01T00:00:00Z")

    assert admin_client.get(LIST_URL, {"revoked_at__isempty": "1"}).context["cl"].result_count == 1
    assert admin_client.get(LIST_URL, {"revoked_at__isempty": "0"}).context["cl"].result_count == 1
