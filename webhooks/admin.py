"""Webhook events in the back office (every provider request, raw), "Replay" with a reason for every
event it leaves unchanged, and the admin site's front page: the dashboard."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from conversations.admin import RecentFilter
from messaging import presentation
from messaging.admin import ProviderFilter
from webhooks.models import WebhookEvent
from webhooks.services import ReplayResult, webhook_replay

REPLAY_LIMIT = 200
#: Results listed one by one in the answer to a replay; the rest are counted.
REPLAY_REPORT_LIMIT = 20

admin.site.site_header = "Messaging back office"
admin.site.site_title = "Messaging back office"
admin.site.index_title = "Inbox"
# The service has no public pages; "View site" opens the API documentation instead of a JSON 404.
admin.site.site_url = "/api/docs/"
admin.site.index_template = "admin/backoffice/index.html"


def replay_report(results: list[ReplayResult]) -> str:
    """One line per event: what changed, or why nothing did."""
    changed = [r for r in results if r.changed]
    lines = [
        f"#{r.event.pk} {r.before} -> {r.after} ({r.detail})"
        if r.changed
        else f"#{r.event.pk} unchanged, {r.before}: {r.detail}"
        for r in results[:REPLAY_REPORT_LIMIT]
    ]
    more = f" (and {len(results) - REPLAY_REPORT_LIMIT} more)" if len(results) > REPLAY_REPORT_LIMIT else ""
    summary = f"Replayed {len(results)} event(s): {len(changed)} changed, {len(results) - len(changed)} unchanged."
    return f"{summary} {'; '.join(lines)}{more}"


@admin.action(description="Replay (process again; events already processed are left alone)")
def replay(modeladmin, request, queryset):
    events = list(queryset.order_by("received_at", "id")[: REPLAY_LIMIT + 1])
    if len(events) > REPLAY_LIMIT:
        modeladmin.message_user(
            request, f"Select at most {REPLAY_LIMIT} events, or use `manage.py replay_webhooks`.", messages.ERROR
        )
        return
    results = [webhook_replay(event=event) for event in events]
    level = messages.SUCCESS if any(r.changed for r in results) else messages.WARNING
    modeladmin.message_user(request, replay_report(results), level)


class ReceivedRecentFilter(RecentFilter):
    field = "received_at"


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("outcome_badge", "message_link", "received", "provider", "kind", "event_type", "what")
    list_display_links = ("received",)
    list_filter = ("outcome", ReceivedRecentFilter, ProviderFilter, "kind", "event_type")
    search_fields = ("=id", "event_id", "provider_message_id")
    search_help_text = "An event id, a provider message id, or the event's number."
    actions = [replay]
    list_select_related = ()
    list_per_page = 50
    show_full_result_count = False
    ordering = ("-received_at", "-id")
    change_form_template = "admin/webhooks/webhookevent/change_form.html"
    readonly_fields = (
        "outcome_badge",
        "note",
        "error",
        "message_link",
        "provider",
        "kind",
        "event_id",
        "event_type",
        "provider_message_id",
        "received_time",
        "processed_time",
        "replayed_time",
        "content_type",
        "headers",
        "body",
    )
    fields = readonly_fields

    class Media:
        css = {"all": ["backoffice/backoffice.css"]}

    def get_urls(self):
        return [
            path(
                "<int:object_id>/replay/",
                self.admin_site.admin_view(require_POST(self.replay_view)),
                name="webhooks_webhookevent_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request, object_id: int):
        event = WebhookEvent.objects.filter(pk=object_id).first()
        if event is None or not self.has_view_permission(request, event):
            raise PermissionDenied
        result = webhook_replay(event=event)
        self.message_user(request, replay_report([result]), messages.SUCCESS if result.changed else messages.WARNING)
        return HttpResponseRedirect(reverse("admin:webhooks_webhookevent_change", args=[event.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {})}
        if str(object_id).isdigit():
            extra["replay_url"] = reverse("admin:webhooks_webhookevent_replay", args=[object_id])
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, event: WebhookEvent) -> str:
        return format_html('<span class="bo-badge bo-outcome-{}">{}</span>', event.outcome, event.outcome)

    @admin.display(description="received", ordering="received_at")
    def received(self, event: WebhookEvent) -> str:
        return presentation.short_time_html(event.received_at)

    @admin.display(description="received at")
    def received_time(self, event: WebhookEvent) -> str:
        return presentation.time_html(event.received_at)

    @admin.display(description="processed at")
    def processed_time(self, event: WebhookEvent) -> str:
        return presentation.time_html(event.processed_at)

    @admin.display(description="replayed at")
    def replayed_time(self, event: WebhookEvent) -> str:
        return presentation.time_html(event.replayed_at)

    @admin.display(description="note or error")
    def what(self, event: WebhookEvent) -> str:
        text = event.error or event.note
        css = "bo-error" if event.error else "bo-preview"
        return format_html('<span class="{}" title="{}">{}</span>', css, text, text) if text else ""

    @admin.display(description="message")
    def message_link(self, event: WebhookEvent) -> str:
        if not event.message_id:
            return "-"
        url = reverse("admin:messaging_message_change", args=[event.message_id])
        return format_html('<a href="{}">#{}</a>', url, event.message_id)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A processed event is the claim that keeps a redelivery from creating a second message.
        return False
