from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from apikeys import openapi  # noqa: F401  (registers ApiKeyAuthentication with drf-spectacular)
        from apikeys.cache import connection_listen

        # Every new connection listens for key changes, so it may remember active keys (apikeys/cache.py).
        connection_created.connect(connection_listen, dispatch_uid="apikeys.cache.connection_listen")
