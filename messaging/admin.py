from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from conversations.admin import ConversationAdmin
from conversations.models import Conversation
from messaging.models import Message

_MESSAGE_FIELDS = (
    "timestamp",
    "direction",
    "type",
    "from_address",
    "to_address",
    "body",
    "attachments",
    "status",
    "provider",
    "provider_message_id",
    "attempts",
    "last_error",
)


class MessageInline(admin.TabularInline):
    """A conversation's thread, oldest first, read-only."""

    model = Message
    fields = _MESSAGE_FIELDS
    readonly_fields = _MESSAGE_FIELDS
    ordering = ("timestamp", "id")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationWithMessagesAdmin(ConversationAdmin):
    def get_inlines(self, request, obj):
        return [MessageInline] if obj is not None else []


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "timestamp",
        "direction",
        "type",
        "from_address",
        "to_address",
        "status",
        "provider",
        "attempts",
        "error_summary",
    )
    list_filter = ("status", "direction", "type", "provider", "channel")
    search_fields = ("=id", "from_address", "to_address", "provider_message_id", "client_message_id", "body")
    list_select_related = ("conversation",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "conversation_link",
        "channel",
        *_MESSAGE_FIELDS,
        "client_message_id",
        "request_fingerprint",
        "next_attempt_at",
        "metadata",
        "created_at",
        "updated_at",
    )
    exclude = ("conversation",)

    @admin.display(description="error")
    def error_summary(self, message: Message) -> str:
        if not message.last_error:
            return ""
        return f"{message.last_error.get('code')}: {message.last_error.get('message')}"

    @admin.display(description="conversation")
    def conversation_link(self, message: Message) -> str:
        url = reverse("admin:conversations_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}">#{}</a>', url, message.conversation_id)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting would leave conversation counts wrong; messages are a record, not a draft.
        return False
