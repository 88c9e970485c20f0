from django.contrib import admin, messages

from webhooks.models import WebhookEvent
from webhooks.services import webhook_replay

REPLAY_LIMIT = 200


@admin.action(description="Replay (process again; events already processed are left alone)")
def replay(modeladmin, request, queryset):
    events = list(queryset.order_by("received_at", "id")[: REPLAY_LIMIT + 1])
    if len(events) > REPLAY_LIMIT:
        modeladmin.message_user(
            request, f"Select at most {REPLAY_LIMIT} events, or use `manage.py replay_webhooks`.", messages.ERROR
        )
        return
    results = [webhook_replay(event=event) for event in events]
    changed = [r for r in results if r.changed]
    summary = "; ".join(f"#{r.event.pk} {r.before} -> {r.after} ({r.detail})" for r in changed[:20])
    modeladmin.message_user(
        request,
        f"Replayed {len(results)} event(s): {len(changed)} changed, {len(results) - len(changed)} unchanged. {summary}",
        messages.SUCCESS,
    )


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "received_at",
        "provider",
        "kind",
        "event_type",
        "event_id",
        "outcome",
        "message_id",
        "note",
        "error",
    )
    list_filter = ("provider", "kind", "outcome", "event_type")
    search_fields = ("=id", "event_id", "provider_message_id", "body")
    actions = [replay]
    date_hierarchy = "received_at"
    ordering = ("-received_at",)
    readonly_fields = (
        "provider",
        "kind",
        "event_id",
        "event_type",
        "provider_message_id",
        "outcome",
        "note",
        "error",
        "message",
        "received_at",
        "processed_at",
        "replayed_at",
        "content_type",
        "headers",
        "body",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A processed event is the claim that keeps a redelivery from creating a second message.
        return False
