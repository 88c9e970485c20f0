import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _apply_orphans(sender, *, assignments, **kwargs) -> None:
    from webhooks.services import webhook_apply_orphans_many

    try:
        webhook_apply_orphans_many(assignments=assignments)
    except Exception:
        # The sends themselves succeeded; the orphans stay stored and `replay_webhooks --outcome orphan`
        # applies them.
        logger.exception(
            "Applying early status events to message(s) %s failed", [each.message_id for each in assignments]
        )


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        import webhooks.checks  # noqa: F401  (registers the start-up checks)
        from messaging.signals import provider_message_ids_assigned

        provider_message_ids_assigned.connect(_apply_orphans, dispatch_uid="webhooks.apply_orphans")
