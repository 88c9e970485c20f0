from django.apps import AppConfig
from django.db.models.signals import post_save


def _count_webhook_event(sender, instance, created: bool, **kwargs) -> None:
    # Counts each stored webhook event once, with the outcome it was first stored with. Until the
    # webhook pipeline calls core.metrics.webhook_event itself (then remove this receiver).
    if created:
        from core.metrics import webhook_event

        webhook_event(provider=instance.provider, kind=instance.kind, outcome=instance.outcome)


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core HTTP plumbing"

    def ready(self) -> None:
        post_save.connect(_count_webhook_event, sender="webhooks.WebhookEvent", dispatch_uid="core.count_webhook_event")
