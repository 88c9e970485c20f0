import pytest

from tests.settings_env import PRODUCTION_ENV, run_with_settings

pytestmark = pytest.mark.django_db

KEY_SECURITY = [{"BearerAuth": []}, {"ApiKeyAuth": []}]


@pytest.fixture
def schema(client):
    return client.get("/api/schema/?format=json").json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_the_schema_declares_a_bearer_and_a_header_scheme(schema):
    schemes = schema["components"]["securitySchemes"]

    assert set(schemes) == {"BearerAuth", "ApiKeyAuth"}
    assert (schemes["BearerAuth"]["type"], schemes["BearerAuth"]["scheme"]) == ("http", "bearer")
    assert (schemes["ApiKeyAuth"]["type"], schemes["ApiKeyAuth"]["in"], schemes["ApiKeyAuth"]["name"]) == (
        "apiKey",
        "header",
        "X-API-Key",
    )


def test_rest_endpoints_take_either_scheme_and_document_the_401(schema):
    protected = [(p, m, op) for p, m, op in operations(schema) if p.startswith(("/api/messages", "/api/conversations"))]

    assert len(protected) == 12  # sends (3), message, conversations (list, get, messages, read, 4 state changes)
    for path, method, operation in protected:
        assert operation["security"] == KEY_SECURITY, (method, path)
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }


def test_webhooks_and_health_are_documented_as_open(schema):
    open_operations = [(p, m, op) for p, m, op in operations(schema) if p.startswith(("/api/webhooks", "/health"))]

    assert open_operations
    for path, method, operation in open_operations:
        assert operation.get("security", [{}]) == [{}], (method, path)
        assert "401" not in operation["responses"], (method, path)


def _setting_under(module: str, environ: dict[str, str]) -> str:
    code = "import django; django.setup(); from django.conf import settings; print(settings.API_AUTH_REQUIRED)"
    result = run_with_settings(module, {**PRODUCTION_ENV, **environ}, "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("module", "environ", "expected"),
    [
        ("config.settings.production", {}, "True"),
        ("config.settings.production", {"API_AUTH_REQUIRED": "false"}, "False"),
        ("config.settings.development", {}, "False"),
        ("config.settings.development", {"API_AUTH_REQUIRED": "true"}, "True"),
    ],
)
def test_keys_are_required_by_default_in_production_only(module, environ, expected):
    assert _setting_under(module, environ) == expected
