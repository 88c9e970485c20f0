import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _apply_orphans(sender, *, message_id: int, provider: str, provider_message_id: str, **kwargs) -> None:
    from webhooks.services import webhook_apply_orphans

    try:
        webhook_apply_orphans(provider=provider, provider_message_id=provider_message_id, message_id=message_id)
    except Exception:
        # The send itself succeeded; the orphans stay stored and `replay_webhooks --outcome orphan` applies them.
        logger.exception("Applying early status events to message %s failed", message_id)


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        import webhooks.checks  # noqa: F401  (registers the start-up checks)
        from messaging.signals import provider_message_id_assigned

        provider_message_id_assigned.connect(_apply_orphans, dispatch_uid="webhooks.apply_orphans")
