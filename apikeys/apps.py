from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "API keys"

    def ready(self) -> None:
        # Registers the OpenAPI description of ApiKeyAuthentication with drf-spectacular.
        from apikeys import openapi  # noqa: F401
