from django.contrib import admin

from conversations.models import Conversation


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

    def get_inlines(self, request, obj):
        # Imported here: conversations must not depend on messaging at import time.
        from messaging.admin import MessageInline

        return [MessageInline] if obj is not None else []

    def has_add_permission(self, request):
        return False
