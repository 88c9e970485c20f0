from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"

    def ready(self) -> None:
        import providers.checks  # noqa: F401  (registers the HTTP-mode credentials check)
