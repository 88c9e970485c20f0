"""The back office's front page: what needs attention, and the last 48 hours of traffic.

Lives in webhooks, the top of the dependency chain, because it counts conversations, messages and
webhook events alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from conversations.models import Conversation, ConversationStatus
from messaging.admin import overdue_pending_messages
from messaging.models import Direction, Message, MessageStatus
from webhooks.models import WebhookEvent, WebhookOutcome

CHART_HOURS = 48


@dataclass(frozen=True)
class Card:
    label: str
    count: int
    url: str
    alert: bool = False


def dashboard_cards(*, now: datetime | None = None) -> list[Card]:
    """Six counts, each linking to the list it counts."""
    now = now or timezone.now()
    day_ago = now - timedelta(hours=24)
    inbox = Conversation.objects.filter(archived_at__isnull=True)
    conversations = reverse("admin:conversations_conversation_changelist")
    open_count = inbox.filter(status=ConversationStatus.OPEN).count()
    unread = inbox.filter(unread_count__gt=0).count()
    awaiting = inbox.filter(status=ConversationStatus.OPEN, last_message_direction=Direction.INBOUND).count()
    overdue = overdue_pending_messages().count()
    failed = Message.objects.filter(
        direction=Direction.OUTBOUND, status=MessageStatus.FAILED, updated_at__gte=day_ago
    ).count()
    rejected = WebhookEvent.objects.filter(outcome=WebhookOutcome.REJECTED, received_at__gte=day_ago).count()
    return [
        Card("Open conversations", open_count, f"{conversations}?status__exact=open"),
        Card("Unread", unread, f"{conversations}?unread=yes"),
        Card("Awaiting reply", awaiting, f"{conversations}?awaiting=yes&status__exact=open", alert=awaiting > 0),
        Card(
            "Pending, overdue",
            overdue,
            f"{reverse('admin:messaging_message_changelist')}?overdue=yes",
            alert=overdue > 0,
        ),
        Card(
            "Failed, last 24 h",
            failed,
            f"{reverse('admin:messaging_failedmessage_changelist')}?recent=24h",
            alert=failed > 0,
        ),
        Card(
            "Rejected webhooks, last 24 h",
            rejected,
            f"{reverse('admin:webhooks_webhookevent_changelist')}?outcome__exact=rejected&recent=24h",
            alert=rejected > 0,
        ),
    ]


#: Bar colours by message status; a status added later is drawn grey until it gets one.
STATUS_COLOURS = {
    "received": "#4a7fc1",
    "pending": "#e0a100",
    "sent": "#8fb8e8",
    "delivered": "#3c9d55",
    "read": "#1e6b34",
    "failed": "#c43c3c",
}
_OTHER_COLOUR = "#9a9a9a"


def dashboard_traffic(*, now: datetime | None = None) -> dict[tuple[datetime, str, str], int]:
    """Messages per hour (by their timestamp), direction and status over the last 48 hours: one query."""
    now = now or timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=CHART_HOURS - 1)
    rows = (
        Message.objects.filter(timestamp__gte=start, timestamp__lte=now)
        .annotate(hour=TruncHour("timestamp"))
        .values("hour", "direction", "status")
        .annotate(count=Count("id"))
        .order_by()
    )
    return {(row["hour"], row["direction"], row["status"]): row["count"] for row in rows}


def dashboard_chart_svg(*, now: datetime | None = None) -> SafeString:
    """A server-rendered SVG bar chart: per hour, inbound (left bar) and outbound (right bar), each stacked
    by status. No script and no external asset; each segment has a tooltip with its count."""
    now = now or timezone.now()
    traffic = dashboard_traffic(now=now)
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=CHART_HOURS - 1)
    hours = [first_hour + timedelta(hours=i) for i in range(CHART_HOURS)]
    statuses = [value for value, _ in MessageStatus.choices]
    totals = {
        (hour, direction): sum(traffic.get((hour, direction, status), 0) for status in statuses)
        for hour in hours
        for direction in Direction.values
    }
    peak = max([*totals.values(), 1])
    width, height, left, bottom, top = 960, 220, 36, 24, 8
    plot_h = height - bottom - top
    slot = (width - left) / CHART_HOURS
    bar_w = max(slot / 2 - 1.5, 1)
    parts = []
    for fraction in (0, 0.5, 1):  # grid lines with their value
        y = top + plot_h * (1 - fraction)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ccc" stroke-width="0.5"/>'
                '<text x="{}" y="{}" font-size="10" text-anchor="end" fill="#888">{}</text>',
                left,
                width,
                f"{y:.1f}",
                f"{y:.1f}",
                left - 4,
                f"{y + 3:.1f}",
                round(peak * fraction),
            )
        )
    for index, hour in enumerate(hours):
        x0 = left + index * slot
        for offset, direction in enumerate(Direction.values):
            y = top + plot_h
            for status in statuses:
                count = traffic.get((hour, direction, status), 0)
                if not count:
                    continue
                h = plot_h * count / peak
                y -= h
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} {}: {} {}</title></rect>',
                        f"{x0 + 0.75 + offset * (bar_w + 0.5):.1f}",
                        f"{y:.1f}",
                        f"{bar_w:.1f}",
                        f"{h:.1f}",
                        STATUS_COLOURS.get(status, _OTHER_COLOUR),
                        timezone.localtime(hour).strftime("%a %H:00"),
                        direction,
                        count,
                        status,
                    )
                )
        if hour.hour % 6 == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" font-size="10" fill="#888">{}</text>',
                    f"{x0:.1f}",
                    height - 8,
                    timezone.localtime(hour).strftime("%a %H:00"),
                )
            )
    total = sum(traffic.values())
    return format_html(
        '<svg viewBox="0 0 {} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">{}</svg>',
        width,
        height,
        f"Messages per hour over the last {CHART_HOURS} hours: {total} in all",
        mark_safe("".join(parts)),  # every part was built with format_html
    )


def dashboard_legend() -> SafeString:
    return format_html_join(
        "",
        '<span><i style="background:{}"></i>{}</span>',
        ((STATUS_COLOURS.get(value, _OTHER_COLOUR), label) for value, label in MessageStatus.choices),
    )
