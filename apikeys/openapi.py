"""How ApiKeyAuthentication appears in the OpenAPI schema: two schemes, either one suffices."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

BEARER_SCHEME = "BearerAuth"
HEADER_SCHEME = "ApiKeyAuth"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = [BEARER_SCHEME, HEADER_SCHEME]

    def get_security_requirement(self, auto_schema):
        return [{BEARER_SCHEME: []}, {HEADER_SCHEME: []}]  # OR, not AND

    def get_security_definition(self, auto_schema):
        how = "An API key made with `manage.py create_api_key NAME` or in the admin"
        return [
            {"type": "http", "scheme": "bearer", "description": f"{how}, as `Authorization: Bearer <key>`."},
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": f"{how}, as `X-API-Key: <key>`."},
        ]
