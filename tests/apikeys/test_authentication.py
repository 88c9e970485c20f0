import pytest

from apikeys.keys import key_generate
from apikeys.models import ApiKey
from messaging.models import Message
from tests import payloads
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

PROTECTED = [
    ("get", "/api/conversations"),
    ("get", "/api/conversations/1"),
    ("get", "/api/conversations/1/messages"),
    ("post", "/api/conversations/1/read"),
    ("get", "/api/messages/1"),
    ("post", "/api/messages/sms"),
    ("post", "/api/messages/email"),
]


def bearer(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def x_api_key(key):
    return {"HTTP_X_API_KEY": key}


def assert_401(response, code):
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert set(body) == {"error"}
    assert (body["error"]["code"], body["error"]["details"]) == (code, {})
    assert body["error"]["message"]


@pytest.mark.usefixtures("auth_required")
class TestWhenRequired:
    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    def test_a_request_without_a_key_is_401_authentication_required(self, api, method, path):
        assert_401(getattr(api, method)(path), "authentication_required")

    @pytest.mark.parametrize("headers", [bearer, x_api_key], ids=["bearer", "x-api-key"])
    def test_a_valid_key_in_either_header_is_let_in(self, api, key, headers):
        MessageFactory()

        assert api.get("/api/conversations", **headers(key)).status_code == 200
        response = api.post("/api/messages/sms", payloads.sms(), format="json", **headers(key))
        assert response.status_code == 201, response.content

    def test_the_bearer_scheme_is_case_insensitive(self, api, key):
        assert api.get("/api/conversations", HTTP_AUTHORIZATION=f"bearer {key}").status_code == 200

    def test_the_same_key_in_both_headers_is_fine(self, api, key):
        assert api.get("/api/conversations", **bearer(key), **x_api_key(key)).status_code == 200

    @pytest.mark.parametrize("headers", [bearer, x_api_key], ids=["bearer", "x-api-key"])
    def test_an_unknown_key_is_401_invalid_api_key(self, api, key, headers):
        assert_401(api.get("/api/conversations", **headers(key_generate())), "invalid_api_key")

    def test_a_revoked_key_is_401_invalid_api_key(self, api, key):
        ApiKey.objects.update(revoked_at="2024-01-01T00:00:00Z")

        assert_401(api.get("/api/conversations", **bearer(key)), "invalid_api_key")

    @pytest.mark.parametrize(
        "headers",
        [
            {"HTTP_AUTHORIZATION": "Bearer"},
            {"HTTP_AUTHORIZATION": "Bearer   "},
            {"HTTP_AUTHORIZATION": "Bearer one two"},
            {"HTTP_AUTHORIZATION": "Bearer not-a-key"},
            {"HTTP_X_API_KEY": ""},
            {"HTTP_X_API_KEY": "ms_short"},
        ],
    )
    def test_a_malformed_key_is_401_invalid_api_key(self, api, key, headers):
        assert_401(api.get("/api/conversations", **headers), "invalid_api_key")

    def test_two_different_keys_are_401(self, api, key):
        assert_401(api.get("/api/conversations", **bearer(key), **x_api_key(key_generate())), "invalid_api_key")

    def test_another_authorization_scheme_is_not_a_key(self, api, key):
        assert_401(api.get("/api/conversations", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz"), "authentication_required")

    def test_a_refused_send_sends_and_stores_nothing(self, api):
        assert_401(api.post("/api/messages/sms", payloads.sms(), format="json"), "authentication_required")

        assert not Message.objects.exists()

    def test_a_key_is_checked_before_the_method_or_the_id(self, api):
        assert_401(api.delete("/api/messages/sms"), "authentication_required")
        assert_401(api.get("/api/messages/999999"), "authentication_required")

    def test_use_updates_last_used_at(self, api, key):
        api.get("/api/conversations", **bearer(key))

        assert ApiKey.objects.get().last_used_at is not None

    @pytest.mark.parametrize(
        ("path", "payload"),
        [("/api/webhooks/sms", payloads.inbound_sms()), ("/api/webhooks/email", payloads.inbound_email())],
    )
    def test_webhooks_need_no_key(self, api, path, payload):
        assert api.post(path, payload, format="json").status_code == 200

    def test_webhooks_ignore_a_key_even_a_wrong_one(self, api):
        response = api.post("/api/webhooks/sms", payloads.inbound_sms(), format="json", **bearer(key_generate()))
        assert response.status_code == 200

    @pytest.mark.parametrize("path", ["/health", "/healthz", "/health/ready"])
    def test_health_needs_no_key(self, api, path):
        assert api.get(path).status_code == 200
        assert api.get(path, **bearer("wrong")).status_code == 200

    @pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
    def test_the_schema_and_swagger_ui_need_no_key(self, api, path):
        assert api.get(path).status_code == 200
        assert api.get(path, **bearer("wrong")).status_code == 200

    def test_the_admin_keeps_its_own_login(self, client):
        response = client.get("/admin/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


class TestWhenNotRequired:
    def test_requests_without_a_key_are_let_in(self, api):
        assert api.get("/api/conversations").status_code == 200
        assert api.post("/api/messages/sms", payloads.sms(), format="json").status_code == 201

    def test_a_valid_key_is_accepted_and_recorded(self, api, key):
        assert api.get("/api/conversations", **x_api_key(key)).status_code == 200
        assert ApiKey.objects.get().last_used_at is not None

    @pytest.mark.parametrize(
        "headers",
        [bearer(key_generate()), x_api_key("nonsense"), {"HTTP_AUTHORIZATION": "Bearer"}],
        ids=["unknown", "malformed", "empty"],
    )
    def test_a_wrong_key_is_still_401_so_clients_learn_early(self, api, headers):
        assert_401(api.get("/api/conversations", **headers), "invalid_api_key")

    def test_a_revoked_key_is_still_401(self, api, key):
        ApiKey.objects.update(revoked_at="2024-01-01T00:00:00Z")

        assert_401(api.get("/api/conversations", **bearer(key)), "invalid_api_key")
