from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from conversations.admin import ConversationAdmin
from conversations.models import Conversation
from messaging.models import Direction, FailedMessage, Message, MessageStatus
from messaging.outbox import outbox_deliver_now

#: "Retry now" calls the provider from the admin request; keep a click's work bounded.
RETRY_NOW_LIMIT = 20


@admin.action(description="Retry now (failed or pending outbound messages)")
def retry_now(modeladmin, request, queryset):
    ids = list(
        queryset.filter(direction=Direction.OUTBOUND, status__in=[MessageStatus.FAILED, MessageStatus.PENDING])
        .order_by("id")
        .values_list("pk", flat=True)[: RETRY_NOW_LIMIT + 1]
    )
    if len(ids) > RETRY_NOW_LIMIT:
        modeladmin.message_user(
            request,
            f"Select at most {RETRY_NOW_LIMIT} messages, or use `manage.py retry_failed` for more.",
            messages.ERROR,
        )
        return
    if not ids:
        modeladmin.message_user(
            request, "None of the selected messages is a failed or pending outbound message.", messages.WARNING
        )
        return
    attempted = outbox_deliver_now(message_ids=ids)
    outcomes = ", ".join(f"#{m.pk} {m.status}" for m in attempted) or "none (a worker holds them)"
    modeladmin.message_user(request, f"Attempted {len(attempted)} of {len(ids)}: {outcomes}.", messages.SUCCESS)


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
    actions = [retry_now]
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
        "attempt_base",
        "first_outcome",
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


@admin.register(FailedMessage)
class FailedMessageAdmin(MessageAdmin):
    """Every failed outbound message with its error, newest first; "Retry now" re-queues and sends."""

    list_display = (  # type: ignore[assignment]
        "id",
        "updated_at",
        "type",
        "from_address",
        "to_address",
        "provider",
        "attempts",
        "error_code",
        "error_message",
    )
    list_filter = ("type", "provider", "channel")  # type: ignore[assignment]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(direction=Direction.OUTBOUND, status=MessageStatus.FAILED)

    @admin.display(description="error code")
    def error_code(self, message: Message) -> str:
        return str((message.last_error or {}).get("code", ""))

    @admin.display(description="error")
    def error_message(self, message: Message) -> str:
        return str((message.last_error or {}).get("message", ""))
