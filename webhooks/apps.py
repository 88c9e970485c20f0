import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _apply_orphans(sender, *, assignments, looked_up=None, **kwargs) -> None:
    from webhooks.services import webhook_apply_orphans_many

    # An assignment whose lookup (webhooks.services.orphans_lookup) found no orphan is done with.
    assignments = [each for each in assignments if (looked_up or {}).get(each.message_id, True)]
    if not assignments:
        return
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
        from messaging.signals import provider_message_ids_assigned, register_assignment_lookup
        from webhooks.services import orphans_lookup

        provider_message_ids_assigned.connect(_apply_orphans, dispatch_uid="webhooks.apply_orphans")
        register_assignment_lookup(orphans_lookup)
