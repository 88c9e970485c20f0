import pytest
from django.db.utils import OperationalError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/health", "/healthz", "/health/", "/healthz/"])
def test_liveness_is_open_and_ok(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readiness_checks_the_database(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_readiness_is_503_when_the_database_is_unreachable(client, monkeypatch):
    from core import health

    class BrokenConnection:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(health, "connection", BrokenConnection())
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_the_openapi_schema_documents_every_contract_path(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for expected in [
        "/api/messages/sms",
        "/api/messages/email",
        "/api/messages/{id}",
        "/api/webhooks/sms",
        "/api/webhooks/email",
        "/api/conversations",
        "/api/conversations/{id}",
        "/api/conversations/{id}/read",
        "/api/conversations/{conversation_id}/messages",
    ]:
        assert any(path.rstrip("/") == expected for path in paths), expected
    listing = paths["/api/conversations"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing == {"$ref": "#/components/schemas/ConversationPage"}, "one envelope object, not an array"
    page = response.json()["components"]["schemas"]["ConversationPage"]
    assert set(page["properties"]) == {"data", "meta"}
    sms = next(spec for path, spec in paths.items() if path.rstrip("/") == "/api/messages/sms")
    assert {"201", "202", "502", "400", "415", "422"} <= set(sms["post"]["responses"])
    assert sms["post"]["requestBody"]["content"]["application/json"]["examples"]


@pytest.mark.parametrize("path", ["/api/docs/", "/api/docs", "/api/schema/", "/api/schema"])
def test_swagger_ui_and_schema_are_served(client, path):
    assert client.get(path).status_code == 200


def test_the_schema_generates_without_warnings(capsys):
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", "/dev/null")


def test_the_send_endpoints_document_every_answer_they_give(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    for path in ("/api/messages/sms", "/api/messages/email"):
        documented = set(schema["paths"][path]["post"]["responses"])
        assert {"201", "202", "400", "409", "413", "415", "422", "429", "502"} <= documented, path
