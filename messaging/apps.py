from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        import messaging.openapi  # noqa: F401  (registers the schema extension for message payloads)
        from conversations.channels import CHANNELS
        from messaging.services import providers_for_channel

        # A mistyped SMS_PROVIDERS entry (or any channel's provider) stops start-up instead of failing the first send.
        for channel in CHANNELS:
            providers_for_channel(channel)
