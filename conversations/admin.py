"""The inbox list of the back office. The transcript page and the reply box are added by messaging.admin,
which registers this class with the thread's messages (conversations does not depend on messaging)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Case, F, OuterRef, Subquery, When
from django.utils import timezone
from django.utils.html import format_html

from conversations.models import Conversation
from conversations.search import conversation_search, message_model
from conversations.services import conversation_mark_read_many

#: Bulk actions change at most this many threads per click.
BULK_LIMIT = 500


class ArchivedFilter(admin.SimpleListFilter):
    """Archived threads are out of the inbox unless asked for."""

    title = "archived"
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return [("no", "Inbox (not archived)"), ("yes", "Archived"), ("all", "All")]

    def choices(self, changelist):
        value = self.value() or "no"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or "no"
        if value == "yes":
            return queryset.filter(archived_at__isnull=False)
        if value == "all":
            return queryset
        return queryset.filter(archived_at__isnull=True)


class YesFilter(admin.SimpleListFilter):
    """A filter with one choice besides "All"."""

    label = ""

    def lookups(self, request, model_admin):
        return [("yes", self.label)]


class UnreadFilter(YesFilter):
    title = "unread"
    parameter_name = "unread"
    label = "Unread"

    def queryset(self, request, queryset):
        return queryset.filter(unread_count__gt=0) if self.value() == "yes" else queryset


class AwaitingReplyFilter(YesFilter):
    title = "awaiting reply"
    parameter_name = "awaiting"
    label = "Last message is inbound"

    def queryset(self, request, queryset):
        return queryset.filter(last_message_direction="inbound") if self.value() == "yes" else queryset


class RecentFilter(admin.SimpleListFilter):
    """Rows whose ``field`` falls in the last hour, day or week: a drill-down by time that costs one
    indexed range condition (the admin's date hierarchy reads every row's date to draw its bar)."""

    title = "when"
    parameter_name = "recent"
    field = "last_message_at"
    WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return [("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days")]

    def queryset(self, request, queryset):
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(**{f"{self.field}__gte": timezone.now() - window})


class ChannelFilter(admin.SimpleListFilter):
    """The channels the model knows, read from the field, so new channels appear without edits here."""

    title = "channel"
    parameter_name = "channel"

    def lookups(self, request, model_admin):
        return model_admin.model._meta.get_field("channel").choices

    def queryset(self, request, queryset):
        return queryset.filter(channel=self.value()) if self.value() else queryset


def contact_annotation():
    """The thread's contact: who wrote the newest message to us, or whom we wrote to. One correlated
    subquery on the thread index per listed row, inside the list's single query."""
    newest = (
        message_model()
        .objects.filter(conversation_id=OuterRef("pk"))
        .order_by("-timestamp", "-id")
        .annotate(contact=Case(When(direction="inbound", then=F("from_address")), default=F("to_address")))
        .values("contact")[:1]
    )
    return Subquery(newest)


@admin.action(description="Mark read")
def mark_read(modeladmin, request, queryset):
    ids = list(queryset.values_list("pk", flat=True)[:BULK_LIMIT])
    changed = conversation_mark_read_many(conversation_ids=ids)
    modeladmin.message_user(request, f"Marked {changed} conversation(s) read.", messages.SUCCESS)


class ConversationAdmin(admin.ModelAdmin):
    list_display = ("contact", "channel_badge", "preview", "last_activity", "unread", "status_badge")
    list_display_links = ("contact",)
    list_filter = (ArchivedFilter, UnreadFilter, AwaitingReplyFilter, RecentFilter, ChannelFilter, "status")
    search_fields = ("participant_a",)  # shows the search box; conversation_search does the matching
    search_help_text = "A phone number in any spelling or a part of its digits, an e-mail address, or words."
    ordering = ("-last_message_at", "-id")
    actions = [mark_read]
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = (
        "channel",
        "participant_a",
        "participant_b",
        "status",
        "archived_at",
        "last_message_at",
        "last_message_preview",
        "message_count",
        "unread_count",
        "last_read_at",
        "created_at",
        "updated_at",
    )

    class Media:
        css = {"all": ["backoffice/backoffice.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(contact_address=contact_annotation())

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return conversation_search(queryset, search_term), False

    @admin.display(description="contact", ordering="participant_a")
    def contact(self, conversation: Conversation) -> str:
        # contact_address is annotated by the changelist's queryset.
        annotated = getattr(conversation, "contact_address", None)
        contact = annotated or f"{conversation.participant_a} / {conversation.participant_b}"
        return format_html('<span class="bo-contact" title="{}">{}</span>', contact, contact)

    @admin.display(description="channel", ordering="channel")
    def channel_badge(self, conversation: Conversation) -> str:
        return format_html(
            '<span class="bo-badge bo-channel bo-channel-{}">{}</span>',
            conversation.channel,
            conversation.get_channel_display(),
        )

    @admin.display(description="last message")
    def preview(self, conversation: Conversation) -> str:
        arrow = "←" if conversation.last_message_direction == "inbound" else "→"
        return format_html(
            '<span class="bo-preview" title="{}">{} {}</span>',
            conversation.last_message_preview,
            arrow if conversation.last_message_direction else "",
            conversation.last_message_preview,
        )

    @admin.display(description="last activity", ordering="last_message_at")
    def last_activity(self, conversation: Conversation) -> str:
        if conversation.last_message_at is None:
            return "-"
        moment = timezone.localtime(conversation.last_message_at)
        return format_html(
            '<time class="bo-time" datetime="{}" title="{}">{}</time>',
            moment.isoformat(),
            f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()}",
            f"{moment:%b %d %H:%M}",
        )

    @admin.display(description="unread", ordering="unread_count")
    def unread(self, conversation: Conversation) -> str:
        if not conversation.unread_count:
            return ""
        return format_html('<span class="bo-badge bo-unread">{}</span>', conversation.unread_count)

    @admin.display(description="status", ordering="status")
    def status_badge(self, conversation: Conversation) -> str:
        label = "archived" if conversation.archived_at else conversation.status
        return format_html('<span class="bo-badge bo-state-{}">{}</span>', label, label)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
