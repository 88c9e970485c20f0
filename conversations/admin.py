from django.contrib import admin
from django.db.models import Q

from conversations.addresses import InvalidAddress, looks_like_email, normalise_email, normalise_phone


def _normalised_or_none(term: str) -> str | None:
    term = term.strip()
    if not term:
        return None
    try:
        return normalise_email(term) if looks_like_email(term) else normalise_phone(term)
    except InvalidAddress:
        return None


class ConversationAdmin(admin.ModelAdmin):
    """Registered by messaging.admin, which adds the thread's messages inline (conversations does not
    depend on messaging)."""

    list_display = (
        "id",
        "channel",
        "participant_a",
        "participant_b",
        "status",
        "message_count",
        "unread_count",
        "last_message_at",
    )
    list_filter = ("channel", "status")
    search_fields = ("participant_a", "participant_b")
    ordering = ("-last_message_at", "-id")
    readonly_fields = (
        "channel",
        "participant_a",
        "participant_b",
        "last_message_at",
        "last_message_preview",
        "message_count",
        "unread_count",
        "last_read_at",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields[:3], "status", "archived_at", *readonly_fields[3:])
    date_hierarchy = "last_message_at"

    def get_search_results(self, request, queryset, search_term):
        """Also match the normalised form, so "201-666-1234" finds "+12016661234"."""
        base = queryset  # already narrowed by the sidebar filters
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        normalised = _normalised_or_none(search_term)
        if normalised:
            queryset |= base.filter(Q(participant_a=normalised) | Q(participant_b=normalised))
        return queryset, may_have_duplicates

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
