"""How the back office shows a message: status badges with their reason, readable errors, sanitised
HTML e-mail, attachments as links, times with seconds and zone. Pure functions returning safe HTML."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import nh3
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince, timeuntil

from conversations.channels import CHANNELS
from conversations.services import message_preview
from messaging.models import Direction, Message, MessageStatus

#: A pending message still waiting this long after its due time is "overdue": no worker is sending.
PENDING_OVERDUE_AFTER = timedelta(minutes=2)

#: Tags kept from an HTML e-mail: nh3's safe set without images (remote images in an agent's browser
#: tell the sender the mail was read, and can be anything) or image maps.
EMAIL_TAGS = nh3.ALLOWED_TAGS - {"img", "map", "area"}
EMAIL_URL_SCHEMES = {"http", "https", "mailto"}


def is_overdue(message: Message, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (
        message.status == MessageStatus.PENDING
        and message.next_attempt_at is not None
        and message.next_attempt_at < now - PENDING_OVERDUE_AFTER
    )


def format_time(moment: datetime | None) -> str:
    """``2026-11-28 06:21:34 UTC``: seconds and the zone, as support staff compare logs."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def format_short_time(moment: datetime | None) -> str:
    """``Nov 28 06:21:34``: for list columns; the full time with its zone is in the title."""
    if moment is None:
        return "-"
    return f"{timezone.localtime(moment):%b %d %H:%M:%S}"


def short_time_html(moment: datetime | None) -> SafeString:
    if moment is None:
        return mark_safe("-")
    return format_html(
        '<time class="bo-time" datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        format_time(moment),
        format_short_time(moment),
    )


def time_html(moment: datetime | None) -> SafeString:
    if moment is None:
        return mark_safe("-")
    return format_html('<time class="bo-time" datetime="{}">{}</time>', moment.isoformat(), format_time(moment))


def error_text(last_error: object) -> str:
    """``400: Invalid 'To' number`` from the stored ``{code, message}``; anything else as text."""
    if not last_error:
        return ""
    if isinstance(last_error, dict):
        code, text = last_error.get("code"), last_error.get("message")
        return ": ".join(str(part) for part in (code, text) if part not in (None, ""))
    return str(last_error)


def status_badge(message: Message, *, now: datetime | None = None, detailed: bool = True) -> SafeString:
    """The status as a coloured badge; failed says why, pending says when the next attempt is due."""
    now = now or timezone.now()
    status = message.status
    note = ""
    css = status
    if status == MessageStatus.FAILED:
        note = error_text(message.last_error)
    elif status == MessageStatus.PENDING and message.next_attempt_at is not None:
        if is_overdue(message, now=now):
            css = "overdue"
            note = f"overdue by {timesince(message.next_attempt_at, now)}"
        elif message.next_attempt_at > now:
            note = f"next attempt in {timeuntil(message.next_attempt_at, now)}"
        else:
            note = "attempt due now"
        if message.last_error and detailed:
            note = f"{note}; last error {error_text(message.last_error)}"
    label = message.get_status_display() if hasattr(message, "get_status_display") else status
    if not detailed or not note:
        return format_html('<span class="bo-badge bo-status-{}" title="{}">{}</span>', css, note, label)
    return format_html(
        '<span class="bo-badge bo-status-{}">{}</span> <span class="bo-status-note bo-note-{}">{}</span>',
        css,
        label,
        css,
        note,
    )


def email_html(body: str) -> SafeString:
    """An HTML e-mail body made safe to show: scripts, styles, event handlers, images and unknown schemes
    removed by nh3; links open in a new tab without a referrer."""
    cleaned = nh3.clean(
        body,
        tags=EMAIL_TAGS,
        clean_content_tags={"script", "style", "head", "title"},
        url_schemes=EMAIL_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return mark_safe(cleaned)  # nh3 output is sanitised HTML


def attachment_name(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or url


def attachments_html(attachments: list) -> SafeString:
    urls = [url for url in attachments or [] if isinstance(url, str)]
    if not urls:
        return mark_safe("")
    return format_html_join(
        "",
        '<a class="bo-attachment" href="{}" target="_blank" rel="noopener noreferrer nofollow">{}</a>',
        ((url if urlsplit(url).scheme in ("http", "https") else "#", attachment_name(url)) for url in urls),
    )


def contact_of(message: Message) -> str:
    return message.from_address if message.direction == Direction.INBOUND else message.to_address


def body_preview(message: Message, *, length: int = 90) -> str:
    text = message_preview(
        body=message.body, is_html=CHANNELS[message.channel].html_body, attachment_count=len(message.attachments or [])
    )
    return text if len(text) <= length else f"{text[: length - 1]}…"
