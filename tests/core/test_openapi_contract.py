"""The OpenAPI schema states what the service accepts and answers: findings of schemathesis (bin/fuzz.sh).

Each case pairs a request with the schema's verdict and the service's answer, so a schema that
drifts from the validation (or the reverse) fails here, not only in `make fuzz`.
"""

import json
import re
import sys
from urllib.parse import urlencode

import jsonschema
import pytest

from core.openapi import NOT_BLANK_PATTERN
from tests import payloads

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def component(schema, name):
    return schema["components"]["schemas"][name]


def operation(schema, method, path):
    return schema["paths"][path][method]


def as_json_schema(node):
    """OpenAPI 3.0's ``nullable`` spelled as JSON Schema."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def schema_accepts(schema, name, payload) -> bool:
    """Whether the request component ``name`` admits ``payload`` (formats are not asserted, as in OpenAPI)."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": as_json_schema(schema["components"])}
    )
    return validator.is_valid(payload)


def test_the_not_blank_pattern_is_exactly_pythons_idea_of_blank():
    # DRF trims text with str.strip(); ECMAScript's \s (the schema's readers) disagrees on a few characters.
    for codepoint in range(sys.maxunicode + 1):
        if 0xD800 <= codepoint <= 0xDFFF:
            continue
        char = chr(codepoint)
        assert (re.search(NOT_BLANK_PATTERN, char) is None) == char.isspace(), hex(codepoint)


class TestSendBodies:
    @pytest.mark.parametrize(
        ("overrides", "status_code"),
        [
            ({}, 201),
            ({"body": "   ", "attachments": None}, 400),
            ({"body": "", "attachments": []}, 400),
            ({"body": "\x1d", "attachments": None}, 400),
            ({"body": "", "attachments": ["https://example.com/a.jpg"], "type": "mms"}, 201),
            ({"body": "x" * 1600}, 201),
            ({"body": "x" * 1601}, 400),
        ],
    )
    def test_blank_bodies_and_body_limits_are_in_the_schema(self, api, schema, overrides, status_code):
        payload = payloads.sms(**overrides)

        response = api.post("/api/messages/sms", payload, format="json")

        assert response.status_code == status_code, response.content
        assert schema_accepts(schema, "SendSmsRequest", payload) == (status_code == 201)

    def test_addresses_and_attachments_name_their_formats(self, schema):
        sms, email = component(schema, "SendSmsRequest"), component(schema, "SendEmailRequest")

        assert sms["properties"]["from"]["format"] == sms["properties"]["to"]["format"] == "phone"
        assert email["properties"]["from"]["format"] == email["properties"]["to"]["format"] == "email"
        assert sms["properties"]["attachments"]["items"]["format"] == "http-url"
        assert email["properties"]["body"]["maxLength"] == 200_000
        for inbound in ("InboundSmsRequest", "InboundEmailRequest"):
            assert "anyOf" in component(schema, inbound), "inbound payloads follow the same body rule"

    @pytest.mark.parametrize("blank", [" ", "\x85", "\u3000"])
    def test_whitespace_only_text_is_refused_and_the_schema_says_so(self, api, schema, blank):
        payload = payloads.sms(client_message_id=blank)

        response = api.post("/api/messages/sms", payload, format="json")

        assert response.status_code == 400
        assert response.json()["error"]["details"] == {"client_message_id": ["This field may not be blank."]}
        assert not schema_accepts(schema, "SendSmsRequest", payload)

    def test_the_pattern_is_for_requests_only(self, schema):
        # A stored value is answered as it is; the pattern describes what input may be.
        result = component(schema, "EventResult")["properties"]["event_id"]
        assert "pattern" not in result

    def test_send_answers_document_the_failed_send_and_the_in_flight_repeat(self, schema):
        responses = operation(schema, "post", "/api/messages/sms")["responses"]

        assert "_forceError" in responses["502"]["description"]
        assert responses["409"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
        key = next(p for p in operation(schema, "post", "/api/messages/sms")["parameters"] if p["in"] == "header")
        assert key["schema"]["pattern"] == NOT_BLANK_PATTERN

    def test_a_forced_4xx_answers_502_with_the_failed_message(self, api):
        payload = payloads.sms(_forceError={"code": 400, "message": "Invalid 'To' number"})

        response = api.post("/api/messages/sms", payload, format="json")

        assert response.status_code == 502
        assert response.json()["status"] == "failed"
        assert response.json()["error"] == {"code": 400, "message": "Invalid 'To' number"}

    def test_a_schema_valid_email_body_can_still_be_too_large_in_bytes(self, api, schema):
        # 200,000 characters pass maxLength; escaped in JSON they take 1.2 MB, past the 1 MiB limit.
        payload = payloads.email(body="\u009e" * 200_000)
        encoded = json.dumps(payload)
        assert schema_accepts(schema, "SendEmailRequest", payload)

        response = api.post("/api/messages/email", encoded, content_type="application/json")

        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert "413" in operation(schema, "post", "/api/messages/email")["responses"]


class TestQueryParameters:
    def test_optional_query_parameters_may_be_sent_empty(self, schema):
        parameters = operation(schema, "get", "/api/conversations")["parameters"]

        assert {p["name"] for p in parameters if p.get("allowEmptyValue")} == {
            "archived",
            "channel",
            "limit",
            "page",
            "participant",
            "q",
            "status",
            "unread",
        }

    def test_an_empty_filter_is_no_filter(self, api):
        api.post("/api/messages/sms", payloads.sms(), format="json")

        response = api.get("/api/conversations?status=&channel=&participant=&limit=&page=&unread=&archived=&q=")

        assert response.status_code == 200
        assert response.json()["meta"] == {"page": 1, "limit": 20, "total": 1}

    def test_the_participant_filter_is_a_phone_number_an_email_address_or_a_user_id(self, api, schema):
        parameter = next(
            p for p in operation(schema, "get", "/api/conversations")["parameters"] if p["name"] == "participant"
        )
        assert parameter["schema"]["format"] == "phone-or-email"

        response = api.get("/api/conversations?participant=no%20such%20contact")

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_address"


class TestTwilioStatusCallbackSchema:
    def test_only_the_fields_read_are_described(self, schema):
        callback = component(schema, "TwilioStatusCallbackRequest")

        assert set(callback["properties"]) == {"MessageSid", "MessageStatus", "ErrorCode", "ErrorMessage"}
        assert callback["required"] == ["MessageSid", "MessageStatus"]
        assert callback["properties"]["ErrorMessage"]["nullable"] is True
        assert callback["properties"]["MessageStatus"]["maxLength"] == 64

    @pytest.mark.parametrize(
        ("body", "status_code"),
        [
            ({"MessageSid": "SM1", "MessageStatus": "sent", "ApiVersion": ""}, 200),
            ({"MessageSid": "SM1", "MessageStatus": "sent", "ErrorCode": "", "ErrorMessage": None}, 200),
            ({"MessageSid": "SM1", "MessageStatus": "sent", "ErrorMessage": {}}, 400),
            ({"MessageSid": 1, "MessageStatus": "sent"}, 400),
            ({"MessageSid": "SM1", "MessageStatus": "\x1d"}, 400),
        ],
    )
    def test_the_schema_and_the_parser_agree(self, client, schema, body, status_code):
        response = client.post("/api/webhooks/sms/status", data=json.dumps(body), content_type="application/json")

        assert response.status_code == status_code, response.content
        assert schema_accepts(schema, "TwilioStatusCallbackRequest", body) == (status_code == 200)

    @pytest.mark.parametrize(
        ("form", "status_code"),
        [
            ({"MessageSid": "SM1", "MessageStatus": "sent", "ErrorCode": "", "ErrorMessage": ""}, 200),
            # "null" in a form is four letters, not a null.
            ({"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "null"}, 200),
            ({"MessageSid": "SM1", "MessageStatus": "sent", "ErrorMessage": "x" * 1001}, 400),
            ({"MessageSid": " ", "MessageStatus": "sent"}, 400),
            ({"MessageSid": "SM1"}, 400),
        ],
    )
    def test_the_form_schema_and_the_parser_agree(self, client, schema, form, status_code):
        response = client.post("/api/webhooks/sms/status", data=urlencode(form), content_type=FORM)

        assert response.status_code == status_code, response.content
        assert schema_accepts(schema, "TwilioStatusCallbackFormRequest", form) == (status_code == 200)

    def test_the_form_schema_admits_text_only(self, schema):
        # schemathesis (seed 228904252808087742551479034553496844738) made a form "invalid" with
        # ErrorMessage={} where the schema said string or null; form encoding drops {}, so the service
        # got a valid form, answered 200, and the run failed.
        request = operation(schema, "post", "/api/webhooks/sms/status")["requestBody"]["content"]

        assert request[FORM]["schema"] == {"$ref": "#/components/schemas/TwilioStatusCallbackFormRequest"}
        assert not schema_accepts(schema, "TwilioStatusCallbackFormRequest", {**self.VALID, "ErrorMessage": None})
        assert schema_accepts(schema, "TwilioStatusCallbackRequest", {**self.VALID, "ErrorMessage": None})

    VALID = {"MessageSid": "SM1", "MessageStatus": "sent"}


def _form_schemas(schema):
    for operations in schema["paths"].values():
        for method in operations.values():
            content = method.get("requestBody", {}).get("content", {})
            if FORM in content:
                yield content[FORM]["schema"]


def _resolved(schema, node):
    if isinstance(node, dict) and "$ref" in node:
        return _resolved(schema, component(schema, node["$ref"].rsplit("/", 1)[1]))
    return node


def test_no_form_field_is_nullable(schema):
    # A form cannot carry a null: a "string or null" field lets a schema reader send a value that is
    # neither (an object or a list), which form encoding drops, leaving a valid form it calls invalid.
    forms = [_resolved(schema, form) for form in _form_schemas(schema)]

    assert forms
    for form in forms:
        assert form["type"] == "object"
        for name, field in form["properties"].items():
            field = _resolved(schema, field)
            assert field.get("type") == "string", name
            assert not field.get("nullable"), name


def _patterns(node):
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


def test_no_pattern_leans_on_ecmascripts_idea_of_whitespace(schema):
    # \s means one thing to the schema's readers (ECMAScript) and another to str.strip(); a pattern that
    # uses it calls some blank text valid (schemathesis found "\x1e" in a seed 004 event's text).
    assert not [pattern for pattern in _patterns(schema) if "\\s" in pattern or "\\S" in pattern]


class TestMockMetaEventSchema:
    @staticmethod
    def accepts(schema, body) -> bool:
        request = operation(schema, "post", "/api/webhooks/mock-meta")["requestBody"]["content"]["application/json"]
        validator = jsonschema.Draft202012Validator(
            {**as_json_schema(request["schema"]), "components": as_json_schema(schema["components"])}
        )
        return validator.is_valid(body)

    @pytest.mark.parametrize(
        ("text", "status_code"),
        [("Hello", 200), ("\x1e", 400), ("\x85 ", 400), (" \u3000", 400), ("\ufeff", 200)],
    )
    def test_the_schema_and_the_parser_agree_on_blank_text(self, client, schema, text, status_code):
        body = {"eventId": f"evt-{ord(text[0])}", "channel": "whatsapp", "from": "+12125550161", "text": text}

        response = client.post("/api/webhooks/mock-meta", data=json.dumps(body), content_type="application/json")

        assert response.status_code == status_code, response.content
        assert self.accepts(schema, body) == (status_code == 200)


def is_openapi_integer(value) -> bool:
    """``type: integer`` as OpenAPI 3.0 (JSON Schema draft 4) and schemathesis read it: 5.0 is not one."""
    return jsonschema.Draft4Validator({"type": "integer"}).is_valid(value)


class TestIntegers:
    @pytest.fixture(autouse=True)
    def conversation(self):
        from tests.factories import ConversationFactory

        ConversationFactory(id=1)

    @pytest.mark.parametrize("path", ["/api/conversations", "/api/conversations/1", "/api/conversations/1/messages"])
    @pytest.mark.parametrize(
        "query",
        # schemathesis (GET only, seed 193724748346926717859444009195118925616) negated limit into the
        # whole number 79369079775230.0, which DRF's IntegerField read as an integer: a 200.
        ["limit=79369079775230.0", "limit=5.0", "page=1.", "limit=%2B5", "limit=%205", "limit=1_0", "page=%EF%BC%91"],
    )
    def test_a_query_integer_is_written_in_digits(self, api, schema, path, query):
        response = api.get(f"{path}?{query}")

        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "validation_error"
        assert not is_openapi_integer(79369079775230.0)

    @pytest.mark.parametrize(
        ("path", "template"),
        [
            ("/api/conversations", "/api/conversations"),
            ("/api/conversations/1", "/api/conversations/{id}"),
            ("/api/conversations/1/messages", "/api/conversations/{conversation_id}/messages"),
        ],
    )
    def test_digits_are_read_and_a_large_limit_is_clamped(self, api, schema, path, template):
        response = api.get(f"{path}?limit=79369079775230&page=01")

        assert response.status_code == 200, response.content
        parameters = {p["name"]: p["schema"] for p in operation(schema, "get", template)["parameters"]}
        assert parameters["limit"]["type"] == parameters["page"]["type"] == "integer"

    @pytest.mark.parametrize(
        "force_error",
        [{"code": "400"}, {"code": 400.0}, {"code": 400, "times": "1"}, {"code": 400, "retry_after": True}],
    )
    def test_a_json_integer_is_a_json_integer(self, api, schema, force_error):
        payload = payloads.sms(_forceError=force_error)

        response = api.post("/api/messages/sms", payload, format="json")

        assert response.status_code == 400, response.content
        assert not all(is_openapi_integer(value) for value in force_error.values())
        force_error_schema = component(schema, "ForceErrorRequest")["properties"]
        assert {force_error_schema[name]["type"] for name in force_error} == {"integer"}
