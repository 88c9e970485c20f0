from django.contrib import admin
from django.db.models import Q

from conversations.addresses import InvalidAddress, looks_like_email, normalise_email, normalise_phone
from conversations.models import Conversation


def _normalised_or_none(term: str) -> str | None:
    term = term.strip()
    if not term:
        return None
    try:
        return normalise_email(term) if looks_like_email(term) else normalise_phone(term)
    except InvalidAddress:
        return None


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
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
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        normalised = _normalised_or_none(search_term)
        if normalised:
            queryset |= self.model.objects.filter(Q(participant_a=normalised) | Q(participant_b=normalised))
        return queryset, may_have_duplicates

    def get_inlines(self, request, obj):
        # Imported here: conversations must not depend on messaging at import time.
        from messaging.admin import MessageInline

        return [MessageInline] if obj is not None else []

    def has_add_permission(self, request):
        return False
