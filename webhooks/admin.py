from django.contrib import admin

from webhooks.models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("id", "received_at", "provider", "kind", "event_id", "outcome", "message_id", "error")
    list_filter = ("provider", "kind", "outcome")
    search_fields = ("=id", "event_id", "body")
    date_hierarchy = "received_at"
    ordering = ("-received_at",)
    readonly_fields = (
        "provider",
        "kind",
        "event_id",
        "outcome",
        "error",
        "message",
        "received_at",
        "processed_at",
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
