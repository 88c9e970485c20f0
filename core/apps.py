from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core HTTP plumbing"

    def ready(self) -> None:
        from core import field_numbering

        field_numbering.install()
