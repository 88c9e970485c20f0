"""Bad input is always a 4xx in the error envelope: never a 500, never an HTML page."""

import json

import pytest

from messaging.models import Message
from tests import payloads

pytestmark = pytest.mark.django_db


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def post_raw(client, path, data, content_type="application/json"):
    return client.post(path, data=data, content_type=content_type)


SEND_PATHS = ["/api/messages/sms", "/api/messages/email"]
ALL_POST_PATHS = [*SEND_PATHS, "/api/webhooks/sms", "/api/webhooks/email"]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize("path", ALL_POST_PATHS)
@pytest.mark.parametrize("data", ["{bad json", '{"from": ', "NaN", "[" * 50_000])
def test_malformed_json_is_400(client, debug, path, data):
    assert_error(post_raw(client, path, data), 400, "malformed_json")


@pytest.mark.parametrize("path", ALL_POST_PATHS)
@pytest.mark.parametrize("data", ["[]", "[1, 2]", '"text"', "42", "null", "true"])
def test_a_body_that_is_not_an_object_is_400(client, debug, path, data):
    assert_error(post_raw(client, path, data), 400, "validation_error")


@pytest.mark.parametrize("path", ALL_POST_PATHS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_non_json_content_type_is_415(client, debug, path, content_type):
    assert_error(post_raw(client, path, "from=x&to=y", content_type), 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ALL_POST_PATHS)
def test_a_body_over_the_size_limit_is_413(client, settings, path):
    settings.MAX_REQUEST_BODY_BYTES = 2048
    body = json.dumps(payloads.sms(body="x" * 4096))
    assert_error(post_raw(client, path, body), 413, "payload_too_large")


@pytest.mark.parametrize("field", ["from", "to"])
def test_missing_addresses_are_400(api, field):
    body = payloads.sms()
    del body[field]
    error = assert_error(api.post("/api/messages/sms", body, format="json"), 400, "validation_error")
    assert field in error["details"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("from", ""), ("to", "   "), ("body", ""), ("body", "   "), ("from", None), ("to", 12015550123)],
)
def test_blank_or_wrongly_typed_fields_are_400(api, field, value):
    error = assert_error(api.post("/api/messages/sms", payloads.sms(**{field: value}), format="json"), 400)
    assert field in error["details"]


@pytest.mark.parametrize("number", ["not-a-phone", "123", "+1", "+999 1234", "call me"])
def test_invalid_phone_numbers_are_400(api, number):
    error = assert_error(api.post("/api/messages/sms", payloads.sms(to=number), format="json"), 400)
    assert "to" in error["details"]


@pytest.mark.parametrize("address", ["not-an-email", "a@b", "@example.com", "+12015550123"])
def test_invalid_email_addresses_are_400(api, address):
    error = assert_error(api.post("/api/messages/email", payloads.email(to=address), format="json"), 400)
    assert "to" in error["details"]


@pytest.mark.parametrize(
    "attachments",
    [
        "https://example.com/a.jpg",
        [1, 2],
        ["not a url"],
        ["ftp://example.com/a.jpg"],
        ["javascript:alert(1)"],
        [f"https://example.com/{n}.jpg" for n in range(11)],
        {"url": "https://example.com/a.jpg"},
    ],
)
def test_attachments_must_be_a_list_of_at_most_10_http_urls(api, attachments):
    error = assert_error(api.post("/api/messages/sms", payloads.sms(attachments=attachments), format="json"), 400)
    assert "attachments" in error["details"]


def test_ten_attachments_are_accepted(api):
    attachments = [f"https://example.com/{n}.jpg" for n in range(10)]
    assert api.post("/api/messages/sms", payloads.sms(attachments=attachments), format="json").status_code == 201


def test_an_sms_body_over_1600_characters_is_400(api):
    error = assert_error(api.post("/api/messages/sms", payloads.sms(body="x" * 1601), format="json"), 400)
    assert "body" in error["details"]
    assert api.post("/api/messages/sms", payloads.sms(body="x" * 1600), format="json").status_code == 201


@pytest.mark.parametrize(
    "timestamp", ["yesterday", "2024-13-01T00:00:00Z", "2024-11-01 25:00", 12345, "9999-12-31T23:59:59-05:00"]
)
def test_unparseable_timestamps_are_400(api, timestamp):
    error = assert_error(api.post("/api/messages/sms", payloads.sms(timestamp=timestamp), format="json"), 400)
    assert "timestamp" in error["details"]


def test_null_characters_are_400_not_a_database_error(api):
    assert_error(api.post("/api/messages/sms", payloads.sms(body="a\u0000b"), format="json"), 400)


def test_an_email_address_on_the_sms_endpoint_is_400(api):
    body = payloads.sms(to="contact@gmail.com")
    error = assert_error(api.post("/api/messages/sms", body, format="json"), 400)
    assert "type" in error["details"]


@pytest.mark.parametrize(("path", "type_"), [("/api/messages/sms", "email"), ("/api/messages/sms", "fax")])
def test_a_type_the_endpoint_does_not_carry_is_400(api, path, type_):
    assert_error(api.post(path, payloads.sms(type=type_), format="json"), 400)


@pytest.mark.parametrize(
    "force_error", [{"code": 200}, {"code": "x"}, {"code": 503, "times": 0}, "503", {"message": "no code"}]
)
def test_an_invalid_force_error_is_400(api, force_error):
    assert_error(api.post("/api/messages/sms", payloads.sms(_forceError=force_error), format="json"), 400)


def test_nothing_is_stored_for_rejected_sends(api):
    api.post("/api/messages/sms", payloads.sms(to="bad"), format="json")
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/messages/sms"),
        ("put", "/api/messages/email"),
        ("get", "/api/webhooks/sms"),
        ("delete", "/api/conversations"),
        ("put", "/api/conversations/1"),
        ("post", "/api/conversations/1/messages"),
        ("post", "/health"),
    ],
)
def test_a_wrong_method_is_405(client, debug, method, path):
    assert_error(getattr(client, method)(path), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/api/unknown", "/nothing/here", "/api/conversations/1/messages/extra", "/api"])
def test_unknown_paths_are_a_json_404(client, debug, path):
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/conversations", "/api/conversations/1/messages"])
@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=abc", "limit=0", "limit=-5", "limit=ten", "page=1.5", "page=99999999999"]
)
def test_bad_paging_is_400(api, path, query):
    from tests.factories import ConversationFactory

    ConversationFactory(id=1)
    assert_error(api.get(f"{path}?{query}"), 400, "validation_error")


def test_an_unexpected_error_is_a_json_500_without_a_stack_trace(client, debug, monkeypatch):
    from conversations import views

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "conversation_list_page", explode)
    error = assert_error(client.get("/api/conversations"), 500, "internal_error")
    assert "secret" not in json.dumps(error)


@pytest.mark.parametrize("path", ["/api/nothing", "/api/conversations/%2F/read"])
def test_a_post_to_an_unknown_path_is_a_json_404_not_a_csrf_page(path):
    from django.test import Client

    assert_error(Client(enforce_csrf_checks=True).post(path, data="{}", content_type="application/json"), 404)


@pytest.mark.parametrize("message_id", ["\uff11", "+1", " 1", "1e0", "0x1"])
def test_ids_must_be_plain_ascii_digits(api, message_id):
    from tests.factories import MessageFactory

    MessageFactory(id=1)
    assert api.get(f"/api/messages/{message_id}").status_code == 404


@pytest.mark.parametrize("path", SEND_PATHS)
@pytest.mark.parametrize("field", ["type", "from", "body", "client_message_id"])
def test_lone_surrogates_are_400_in_every_field(client, path, field):
    body = payloads.sms() if path.endswith("sms") else payloads.email()
    body[field] = "\ud800"
    assert_error(post_raw(client, path, json.dumps(body)), 400)
