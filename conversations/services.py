"""Writes to conversations. Callers own the transaction; nothing here talks to the network."""

from __future__ import annotations

import functools
import html
import re
from datetime import datetime
from typing import Any

import nh3
from django.db import connection
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from conversations.addresses import looks_like_email
from conversations.channels import CHANNELS
from conversations.models import Conversation, ConversationStatus
from conversations.selectors import conversation_get
from core.inserts import insert_parts, unsaved

PREVIEW_LENGTH = 160


def thread_address(address: str) -> str:
    """How a normalised address identifies a thread: e-mail addresses compare whole and case-insensitively
    (``Jane@Example.com`` and ``jane@example.com`` are one contact); the message keeps what was sent."""
    return address.lower() if looks_like_email(address) else address


def conversation_get_or_create(*, channel: str, address_1: str, address_2: str) -> Conversation:
    """The thread for two normalised addresses, created if new.

    Safe under concurrency: the unique constraint decides, and ``get_or_create`` re-reads the
    winner's row when its own INSERT loses. Must run inside ``transaction.atomic``.
    """
    participant_a, participant_b = sorted((thread_address(address_1), thread_address(address_2)))
    conversation, _ = Conversation.objects.get_or_create(
        channel=channel, participant_a=participant_a, participant_b=participant_b
    )
    return conversation


#: Tags that end a line of text: the preview keeps a space where they were ("Hello,</p><p>I" -> "Hello, I").
_BLOCK_TAG = re.compile(r"<(/?(?:p|div|br|li|tr|td|h[1-6]|blockquote|table|ul|ol)\b)", re.IGNORECASE)


def _html_to_text(body: str) -> str:
    # nh3 (a real HTML parser) rather than Django's strip_tags, which gives up on hostile input.
    spaced = _BLOCK_TAG.sub(r" <\1", body)
    return html.unescape(nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style", "head", "title"}))


def message_preview(*, body: str, is_html: bool, attachment_count: int) -> str:
    text = _html_to_text(body) if is_html else body
    text = " ".join(text.split())
    if not text and attachment_count:
        text = f"[{attachment_count} attachment{'s' if attachment_count != 1 else ''}]"
    return text[:PREVIEW_LENGTH]


def conversation_record_message(*, conversation_id: int, timestamp: datetime, preview: str, inbound: bool) -> None:
    """Counts a new message into the thread's summary in one UPDATE.

    Increments are relative (``F() + 1``) and the row lock the UPDATE takes serialises writers, so
    counts stay exact under concurrency. The newest message by timestamp wins the preview even when
    messages arrive out of order; SET expressions all read the row as it was before the UPDATE.

    An inbound message reopens a closed thread and brings an archived one back to the inbox: the
    contact wrote again, so somebody has to look.
    """
    is_newest = Q(last_message_at__isnull=True) | Q(last_message_at__lte=timestamp)
    direction = "inbound" if inbound else "outbound"
    reopen = {"status": ConversationStatus.OPEN, "archived_at": None} if inbound else {}
    Conversation.objects.filter(pk=conversation_id).update(
        message_count=F("message_count") + 1,
        unread_count=F("unread_count") + (1 if inbound else 0),
        last_message_preview=Case(When(is_newest, then=Value(preview)), default=F("last_message_preview")),
        last_message_direction=Case(When(is_newest, then=Value(direction)), default=F("last_message_direction")),
        **reopen,
        last_message_at=Case(
            When(last_message_at__isnull=True, then=Value(timestamp)),
            default=Greatest(F("last_message_at"), Value(timestamp)),
        ),
        updated_at=timezone.now(),
    )


def conversation_upsert_counting_sql(
    *, channel: str, address_1: str, address_2: str, timestamp: datetime, preview: str, inbound: bool, source: str
) -> tuple[str, list[Any]]:
    """``conversation_get_or_create`` followed by ``conversation_record_message`` as one statement, for
    a ``WITH`` that inserts the message in the same round trip: ``INSERT ... SELECT ... FROM <source>
    ON CONFLICT (the participants' unique constraint) DO UPDATE`` with the same counters, preview and
    reopening rules, ``RETURNING id``. One row per row of ``source`` (none: nothing is written).
    The row lock the upsert takes serialises writers exactly as the UPDATE does."""
    participant_a, participant_b = sorted((thread_address(address_1), thread_address(address_2)))
    direction = "inbound" if inbound else "outbound"
    new = unsaved(
        Conversation,
        channel=channel,
        participant_a=participant_a,
        participant_b=participant_b,
        status=ConversationStatus.OPEN,
        last_message_at=timestamp,
        last_message_preview=preview,
        last_message_direction=direction,
        message_count=1,
        unread_count=1 if inbound else 0,
    )
    columns, placeholders, params = insert_parts(new)
    return _conversation_upsert_sql(tuple(columns), tuple(placeholders), source=source, inbound=inbound), params


@functools.cache
def _conversation_upsert_sql(
    columns: tuple[str, ...], placeholders: tuple[str, ...], *, source: str, inbound: bool
) -> str:
    """The text of ``conversation_upsert_counting_sql``'s statement: the same few shapes on every request."""
    table = connection.ops.quote_name(Conversation._meta.db_table)
    is_newest = "c.last_message_at IS NULL OR c.last_message_at <= EXCLUDED.last_message_at"
    reopen = f", status = '{ConversationStatus.OPEN}', archived_at = NULL" if inbound else ""
    return (
        f"INSERT INTO {table} AS c ({', '.join(columns)}) SELECT {', '.join(placeholders)} FROM {source}"
        " ON CONFLICT ON CONSTRAINT conversation_unique_participants DO UPDATE SET"
        " message_count = c.message_count + 1,"
        f" unread_count = c.unread_count + {1 if inbound else 0},"
        f" last_message_preview = CASE WHEN {is_newest} THEN EXCLUDED.last_message_preview"
        " ELSE c.last_message_preview END,"
        f" last_message_direction = CASE WHEN {is_newest} THEN EXCLUDED.last_message_direction"
        " ELSE c.last_message_direction END,"
        " last_message_at = GREATEST(c.last_message_at, EXCLUDED.last_message_at),"
        f" updated_at = EXCLUDED.updated_at{reopen}"
        " RETURNING c.id"
    )


def conversation_mark_read(*, conversation_id: int | str) -> Conversation:
    now = timezone.now()
    conversation = conversation_get(conversation_id=conversation_id)
    Conversation.objects.filter(pk=conversation.pk).update(unread_count=0, last_read_at=now, updated_at=now)
    conversation.refresh_from_db()
    return conversation


def _set(conversation_id: int | str, *, unless: Q, **fields) -> Conversation:
    """Applies ``fields`` unless the row is already in that state (``unless``): idempotent, and the
    UPDATE is guarded so concurrent clicks change the row once. 404 for an unknown id."""
    conversation = conversation_get(conversation_id=conversation_id)
    Conversation.objects.filter(pk=conversation.pk).exclude(unless).update(**fields, updated_at=timezone.now())
    conversation.refresh_from_db()
    return conversation


def conversation_close(*, conversation_id: int | str) -> Conversation:
    return _set(conversation_id, unless=Q(status=ConversationStatus.CLOSED), status=ConversationStatus.CLOSED)


def conversation_reopen(*, conversation_id: int | str) -> Conversation:
    return _set(conversation_id, unless=Q(status=ConversationStatus.OPEN), status=ConversationStatus.OPEN)


def conversation_archive(*, conversation_id: int | str) -> Conversation:
    """Hides the thread from the inbox (lists show unarchived threads by default) until it is unarchived
    or the contact writes again. Archiving twice keeps the first time."""
    return _set(conversation_id, unless=Q(archived_at__isnull=False), archived_at=timezone.now())


def conversation_unarchive(*, conversation_id: int | str) -> Conversation:
    return _set(conversation_id, unless=Q(archived_at__isnull=True), archived_at=None)


def conversation_mark_read_many(*, conversation_ids: list[int]) -> int:
    """Bulk "mark read": returns how many threads had unread messages."""
    now = timezone.now()
    return Conversation.objects.filter(pk__in=conversation_ids, unread_count__gt=0).update(
        unread_count=0, last_read_at=now, updated_at=now
    )


def conversation_recompute_summary(*, conversation_id: int) -> None:
    """Recounts a thread's summary from its messages (for bulk loads such as ``seed_demo``): count,
    newest time, preview and direction. ``unread_count`` counts inbound messages after ``last_read_at``."""
    conversation = Conversation.objects.get(pk=conversation_id)
    thread = conversation.messages.all()
    newest = thread.order_by("-timestamp", "-id").first()
    unread = thread.filter(direction="inbound")
    if conversation.last_read_at is not None:
        unread = unread.filter(timestamp__gt=conversation.last_read_at)
    Conversation.objects.filter(pk=conversation_id).update(
        message_count=thread.count(),
        unread_count=unread.count(),
        last_message_at=newest.timestamp if newest else None,
        last_message_preview=message_preview(
            body=newest.body, is_html=CHANNELS[newest.channel].html_body, attachment_count=len(newest.attachments or [])
        )
        if newest
        else "",
        last_message_direction=newest.direction if newest else "",
        updated_at=timezone.now(),
    )
