from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        # A mistyped SMS_PROVIDER / EMAIL_PROVIDER stops start-up instead of failing the first send.
        from django.conf import settings

        import messaging.openapi  # noqa: F401  (registers the schema extension for message payloads)
        from providers.registry import provider_for_channel

        for channel in settings.MESSAGE_PROVIDERS:
            provider_for_channel(channel)
