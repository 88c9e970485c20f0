"""The back office's messages: the conversation transcript with its reply box and actions, the message
lists (all, failed) and a message's page with "Retry now"."""

from __future__ import annotations

import uuid
from contextlib import suppress

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from conversations.admin import ChannelFilter, ConversationAdmin, RecentFilter, YesFilter
from conversations.channels import CHANNELS, channel_choices
from conversations.models import Conversation
from conversations.search import message_search
from conversations.services import (
    conversation_archive,
    conversation_close,
    conversation_mark_read,
    conversation_reopen,
    conversation_unarchive,
)
from core.errors import ApplicationError
from core.pagination import MAX_PAGE, PageRequest
from messaging import presentation
from messaging.inbox import conversation_reply, conversation_reply_command, conversation_thread_page
from messaging.models import Direction, FailedMessage, Message, MessageStatus
from messaging.outbox import outbox_deliver_now
from messaging.ratelimits import rate_limit_consume
from messaging.services import provider_for_channel

#: "Retry now" calls the provider from the admin request; keep a click's work bounded.
RETRY_NOW_LIMIT = 20
#: Messages per transcript page: the newest first, "older" pages back.
TRANSCRIPT_PAGE_SIZE = 50


def overdue_pending_messages(queryset=None):
    queryset = Message.objects.all() if queryset is None else queryset
    return queryset.filter(
        direction=Direction.OUTBOUND,
        status=MessageStatus.PENDING,
        next_attempt_at__lt=timezone.now() - presentation.PENDING_OVERDUE_AFTER,
    )


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
    _retry(modeladmin, request, ids)


def _retry(modeladmin, request, ids: list[int]) -> None:
    attempted = outbox_deliver_now(message_ids=ids)
    outcomes = ", ".join(
        f"#{m.pk} {m.status}" + (f" ({presentation.error_text(m.last_error)})" if m.last_error else "")
        for m in attempted
    )
    level = messages.SUCCESS if all(m.status != MessageStatus.FAILED for m in attempted) else messages.WARNING
    modeladmin.message_user(
        request, f"Attempted {len(attempted)} of {len(ids)}: {outcomes or 'none (a worker holds them)'}.", level
    )


# Filters -------------------------------------------------------------------------------------------


class OverduePendingFilter(YesFilter):
    title = "overdue"
    parameter_name = "overdue"
    label = "Pending past its retry time"

    def queryset(self, request, queryset):
        return overdue_pending_messages(queryset) if self.value() == "yes" else queryset


class ConversationOverdueFilter(YesFilter):
    title = "overdue"
    parameter_name = "overdue"
    label = "Has an overdue pending message"

    def queryset(self, request, queryset):
        if self.value() != "yes":
            return queryset
        return queryset.filter(Exists(overdue_pending_messages().filter(conversation_id=OuterRef("pk"))))


class MessageRecentFilter(RecentFilter):
    """By the message's own time (``timestamp``), the time support staff reason in."""

    field = "timestamp"


class ProviderFilter(admin.SimpleListFilter):
    """The configured providers, from the registry (a DISTINCT over every message would read them all)."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        names = set()
        for channel, _ in channel_choices():
            with suppress(ImproperlyConfigured):
                names.add(provider_for_channel(channel).name)
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class FailedRecentFilter(RecentFilter):
    """Failed messages by when they failed (their last change)."""

    field = "updated_at"


# Conversations: the transcript ------------------------------------------------------------------


class ReplyForm(forms.Form):
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Write a reply…"}), required=False, strip=False
    )
    attachments = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": "Attachment URLs, one per line (optional)"}),
        required=False,
    )
    #: One per rendered form: a double submit sends once.
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def attachment_urls(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["attachments"].splitlines() if line.strip()]


_STATE_ACTIONS = {
    "read": (conversation_mark_read, "Marked read."),
    "close": (conversation_close, "Closed."),
    "reopen": (conversation_reopen, "Reopened."),
    "archive": (conversation_archive, "Archived: hidden from the inbox until unarchived or the contact writes."),
    "unarchive": (conversation_unarchive, "Unarchived."),
}


@admin.register(Conversation)
class ConversationWithMessagesAdmin(ConversationAdmin):
    list_filter = (*ConversationAdmin.list_filter, ConversationOverdueFilter)  # type: ignore[assignment]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/reply/", view(require_POST(self.reply_view)), name="conversations_conversation_reply"
            ),
            path(
                "<int:object_id>/do/<str:action>/",
                view(require_POST(self.state_view)),
                name="conversations_conversation_state",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The transcript: reading a thread does not mark it read (the "Mark read" button does)."""
        conversation = self.get_object(request, object_id)
        if conversation is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if not self.has_view_or_change_permission(request, conversation):
            raise PermissionDenied
        return self._transcript(request, conversation, ReplyForm(initial={"idempotency_key": uuid.uuid4()}))

    def _transcript(self, request, conversation: Conversation, form: ReplyForm, status: int = 200):
        try:
            page_number = min(max(1, int(request.GET.get("page", "1"))), MAX_PAGE)
        except ValueError:
            page_number = 1
        thread = conversation_thread_page(
            conversation_id=conversation.pk, page=PageRequest(page=page_number, limit=TRANSCRIPT_PAGE_SIZE)
        )
        now = timezone.now()
        rows = [
            {
                "message": message,
                "inbound": message.direction == Direction.INBOUND,
                "time": presentation.time_html(message.timestamp),
                "badge": presentation.status_badge(message, now=now),
                "html": presentation.email_html(message.body) if CHANNELS[message.channel].html_body else None,
                "attachments": presentation.attachments_html(message.attachments),
                "url": reverse("admin:messaging_message_change", args=[message.pk]),
            }
            for message in reversed(thread.messages)  # oldest at the top, as a chat reads
        ]
        contact = next((presentation.contact_of(message) for message in thread.messages), None)
        can_change = self.has_change_permission(request, conversation)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": contact or str(conversation),
            "subtitle": None,
            "conversation": conversation,
            "contact": contact,
            "rows": rows,
            "thread": thread,
            "older_page": page_number + 1 if thread.has_older else None,
            "newer_page": page_number - 1 if page_number > 1 else None,
            "form": form if can_change and rows else None,
            "can_change": can_change,
            "state_actions": self._state_buttons(conversation) if can_change else [],
            "side": [
                ("Channel", conversation.get_channel_display()),
                ("Participants", f"{conversation.participant_a} · {conversation.participant_b}"),
                ("Status", conversation.status),
                ("Archived", presentation.format_time(conversation.archived_at) if conversation.archived_at else "no"),
                ("Messages", conversation.message_count),
                ("Unread", conversation.unread_count),
                ("Last message", presentation.format_time(conversation.last_message_at)),
                ("Last read", presentation.format_time(conversation.last_read_at)),
                ("Created", presentation.format_time(conversation.created_at)),
                ("Id", conversation.pk),
            ],
            "messages_url": reverse("admin:messaging_message_changelist")
            + f"?conversation__id__exact={conversation.pk}",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/conversations/conversation/transcript.html", context, status=status)

    def _state_buttons(self, conversation: Conversation) -> list[tuple[str, str, str]]:
        buttons = []
        if conversation.unread_count:
            buttons.append(("read", "Mark read", "default"))
        if conversation.status == "open":
            buttons.append(("close", "Close", ""))
        else:
            buttons.append(("reopen", "Reopen", ""))
        buttons.append(("unarchive", "Unarchive", "") if conversation.archived_at else ("archive", "Archive", ""))
        return [
            (reverse("admin:conversations_conversation_state", args=[conversation.pk, name]), label, css)
            for name, label, css in buttons
        ]

    def _changeable(self, request, object_id) -> Conversation:
        conversation = self.get_object(request, str(object_id))
        if conversation is None or not self.has_change_permission(request, conversation):
            raise PermissionDenied
        return conversation

    def state_view(self, request, object_id: int, action: str):
        conversation = self._changeable(request, object_id)
        if action not in _STATE_ACTIONS:
            raise PermissionDenied
        service, done = _STATE_ACTIONS[action]
        service(conversation_id=conversation.pk)
        self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:conversations_conversation_change", args=[conversation.pk]))

    def reply_view(self, request, object_id: int):
        """Sends through the API's validation and ``message_send``; the form's key makes a double submit
        send once. Answers with the transcript, the new message at the bottom."""
        conversation = self._changeable(request, object_id)
        form = ReplyForm(request.POST)
        if not form.is_valid():
            return self._transcript(request, conversation, form, status=400)
        try:
            command = conversation_reply_command(
                conversation=conversation,
                body=form.cleaned_data["body"],
                attachments=form.attachment_urls(),
                idempotency_key=str(form.cleaned_data["idempotency_key"]),
            )
            rate_limit_consume(request=request, channel=command.channel, sender=command.from_address)
            outcome = conversation_reply(command=command)
        except ApplicationError as error:
            for field, problems in (error.details or {}).items():
                target = field if field in form.fields else None
                for problem in _flat_problems(problems):
                    form.add_error(target, f"{field}: {problem}" if target is None else problem)
            if not form.errors:
                form.add_error(None, error.message)
            return self._transcript(request, conversation, form, status=400)
        message = outcome.message
        if outcome.replayed:
            self.message_user(request, f"Already sent as message #{message.pk} (the form was submitted twice).")
        elif message.status == MessageStatus.FAILED:
            self.message_user(
                request, f"Reply #{message.pk} failed: {presentation.error_text(message.last_error)}", messages.ERROR
            )
        elif message.status == MessageStatus.PENDING:
            self.message_user(
                request, f"Reply #{message.pk} is pending: the provider will be retried.", messages.WARNING
            )
        else:
            self.message_user(request, f"Reply #{message.pk} {message.status}.", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:conversations_conversation_change", args=[conversation.pk]) + f"#message-{message.pk}"
        )


# Messages ---------------------------------------------------------------------------------------------


class MessageAdmin(admin.ModelAdmin):
    list_display = ("time", "arrow", "contact", "preview", "status_badge", "short_error", "thread")
    list_display_links = ("time",)
    list_filter = (
        "status",
        OverduePendingFilter,
        MessageRecentFilter,
        "direction",
        ChannelFilter,
        "type",
        ProviderFilter,
    )
    search_fields = ("=id",)  # shows the search box; message_search does the matching
    search_help_text = "A contact's number (any spelling, or part of its digits) or address, or words in bodies."
    actions = [retry_now]
    list_select_related = ()
    list_per_page = 50
    show_full_result_count = False
    date_hierarchy = "timestamp"
    ordering = ("-timestamp", "-id")
    change_form_template = "admin/messaging/message/change_form.html"
    fields = (
        "thread_link",
        "status_badge_detailed",
        "time_detailed",
        "direction",
        "channel",
        "type",
        "from_address",
        "to_address",
        "body_view",
        "attachment_links",
        "error_view",
        "attempts",
        "next_attempt",
        "provider",
        "provider_message_id",
        "client_message_id",
        "first_outcome",
        "metadata",
        "created",
        "updated",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["backoffice/backoffice.css"]}

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit() and len(term) < 4:
            return queryset.filter(pk=int(term)), False
        return message_search(queryset, term), False

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:object_id>/retry/",
                self.admin_site.admin_view(require_POST(self.retry_view)),
                name="{}_{}_retry".format(*info),
            ),
            *super().get_urls(),
        ]

    def retry_view(self, request, object_id: int):
        if not request.user.has_perm("messaging.view_message"):
            raise PermissionDenied
        message = Message.objects.filter(pk=object_id).first()
        if message is None:
            raise PermissionDenied
        if message.direction != Direction.OUTBOUND or message.status not in (
            MessageStatus.FAILED,
            MessageStatus.PENDING,
        ):
            self.message_user(
                request, f"Message #{message.pk} is {message.status}: nothing to retry.", messages.WARNING
            )
        else:
            _retry(self, request, [message.pk])
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[message.pk])
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        message = (
            Message.objects.filter(pk=object_id).only("direction", "status").first() if object_id.isdigit() else None
        )
        retryable = bool(
            message
            and message.direction == Direction.OUTBOUND
            and message.status in (MessageStatus.FAILED, MessageStatus.PENDING)
        )
        extra = {
            **(extra_context or {}),
            "retry_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_retry", args=[object_id])
            if retryable
            else None,
        }
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="time", ordering="timestamp")
    def time(self, message: Message) -> str:
        return presentation.short_time_html(message.timestamp)

    @admin.display(description="", ordering="direction")
    def arrow(self, message: Message) -> str:
        inbound = message.direction == Direction.INBOUND
        return format_html(
            '<span class="bo-dir bo-dir-{}" title="{}">{}</span>',
            message.direction,
            message.direction,
            "←" if inbound else "→",
        )

    @admin.display(description="contact")
    def contact(self, message: Message) -> str:
        contact = presentation.contact_of(message)
        return format_html('<span class="bo-contact" title="{}">{}</span>', contact, contact)

    @admin.display(description="message")
    def preview(self, message: Message) -> str:
        text = presentation.body_preview(message)
        return format_html('<span class="bo-preview" title="{}">{}</span>', text, text)

    @admin.display(description="status", ordering="status")
    def status_badge(self, message: Message) -> str:
        return presentation.status_badge(message, detailed=False)

    @admin.display(description="error")
    def short_error(self, message: Message) -> str:
        text = presentation.error_text(message.last_error)
        return format_html('<span class="bo-error" title="{}">{}</span>', text, text) if text else ""

    @admin.display(description="thread")
    def thread(self, message: Message) -> str:
        url = reverse("admin:conversations_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}#message-{}">#{}</a>', url, message.pk, message.conversation_id)

    @admin.display(description="conversation")
    def thread_link(self, message: Message) -> str:
        url = reverse("admin:conversations_conversation_change", args=[message.conversation_id])
        return format_html(
            '<a href="{}#message-{}">Conversation #{} (transcript)</a>', url, message.pk, message.conversation_id
        )

    @admin.display(description="status")
    def status_badge_detailed(self, message: Message) -> str:
        return presentation.status_badge(message)

    @admin.display(description="timestamp")
    def time_detailed(self, message: Message) -> str:
        return presentation.time_html(message.timestamp)

    @admin.display(description="next attempt at")
    def next_attempt(self, message: Message) -> str:
        return presentation.time_html(message.next_attempt_at)

    @admin.display(description="created at")
    def created(self, message: Message) -> str:
        return presentation.time_html(message.created_at)

    @admin.display(description="updated at")
    def updated(self, message: Message) -> str:
        return presentation.time_html(message.updated_at)

    @admin.display(description="body")
    def body_view(self, message: Message) -> str:
        if CHANNELS[message.channel].html_body:
            return format_html(
                '<div class="bo-email">{}</div>'
                '<details class="bo-source"><summary>Source</summary><pre>{}</pre></details>',
                presentation.email_html(message.body),
                message.body,
            )
        return format_html('<div class="bo-text">{}</div>', message.body)

    @admin.display(description="attachments")
    def attachment_links(self, message: Message) -> str:
        return presentation.attachments_html(message.attachments) or "-"

    @admin.display(description="error")
    def error_view(self, message: Message) -> str:
        text = presentation.error_text(message.last_error)
        return format_html('<span class="bo-error-full">{}</span>', text) if text else "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting would leave conversation counts wrong; messages are a record, not a draft.
        return False


admin.site.register(Message, MessageAdmin)


@admin.register(FailedMessage)
class FailedMessageAdmin(MessageAdmin):
    """Every failed outbound message with its error, newest failure first; "Retry now" re-queues and sends."""

    list_display = ("failed_at", "contact", "preview", "short_error", "attempts", "thread")  # type: ignore[assignment]
    list_display_links = ("failed_at",)
    list_filter = (FailedRecentFilter, ChannelFilter, "type", ProviderFilter)  # type: ignore[assignment]
    ordering = ("-updated_at", "-id")
    date_hierarchy = "updated_at"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(direction=Direction.OUTBOUND, status=MessageStatus.FAILED)

    @admin.display(description="failed at", ordering="updated_at")
    def failed_at(self, message: Message) -> str:
        return presentation.short_time_html(message.updated_at)


def _flat_problems(problems: object) -> list[str]:
    """DRF's error details as plain sentences: a list item's problems ({0: [...]}) read "item 1: ..."."""
    if isinstance(problems, dict):
        return [
            f"item {key + 1}: {problem}" if isinstance(key, int) else f"{key}: {problem}"
            for key, value in problems.items()
            for problem in _flat_problems(value)
        ]
    if isinstance(problems, list | tuple):
        return [problem for value in problems for problem in _flat_problems(value)]
    return [str(problems)]
