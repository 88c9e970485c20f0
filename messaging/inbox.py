"""The support inbox on top of the send pipeline: a thread's newest page of messages, and replying from
the back office through the same validation and ``message_send`` as the API."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from rest_framework.exceptions import ValidationError as DRFValidationError

from conversations.models import Conversation, ConversationTally
from conversations.selectors import conversation_get
from core.database import longer_bounds
from core.errors import ValidationFailed
from core.pagination import LazyCount, PageRequest, page_total
from messaging.models import Direction, Message
from messaging.selectors import message_thread_rows
from messaging.serializers import SendAnyChannelSerializer
from messaging.services import SendCommand, SendOutcome, message_send

#: Every back-office reply's idempotency key starts with this, so replies can be told from API sends.
REPLY_KEY_PREFIX = "backoffice:"


@dataclass(frozen=True)
class ThreadPage:
    conversation: Conversation
    #: Newest first.
    messages: list[Message]
    page: PageRequest
    total: int

    @property
    def has_older(self) -> bool:
        return self.page.offset + len(self.messages) < self.total


def conversation_thread_page(*, conversation_id: int | str, page: PageRequest) -> ThreadPage:
    """One page of a thread, newest first (page 1 is the newest ``limit`` messages). Two queries whatever
    the thread's length: the conversation (whose ``message_count`` is the total, see ``page_total``) and
    the page, which the (conversation, timestamp, id) index serves."""
    conversation = conversation_get(conversation_id=conversation_id)
    messages = message_thread_rows(conversation_id=conversation.pk, order="desc", page=page)
    thread = LazyCount(lambda: Message.objects.filter(conversation=conversation))
    total = page_total(thread, page, messages, kept=conversation.message_count)
    return ThreadPage(conversation=conversation, messages=messages, page=page, total=total)


@dataclass(frozen=True)
class ReplyRoute:
    from_address: str
    to_address: str


def conversation_reply_route(*, conversation: Conversation) -> ReplyRoute | None:
    """Who a reply goes from and to: the business address and the contact, read off the newest message
    (the business sent an outbound one and received an inbound one). None for a thread with no messages."""
    newest = Message.objects.filter(conversation=conversation).order_by("-timestamp", "-id").first()
    if newest is None:
        return None
    if newest.direction == Direction.OUTBOUND:
        return ReplyRoute(from_address=newest.from_address, to_address=newest.to_address)
    return ReplyRoute(from_address=newest.to_address, to_address=newest.from_address)


def conversation_reply_command(
    *, conversation: Conversation, body: str, attachments: list[str], idempotency_key: str
) -> SendCommand:
    """Validates a reply as the API validates a send and returns the command for ``message_send``.

    Raises ``ValidationFailed`` (with per-field details) for a reply the API would refuse.
    """
    route = conversation_reply_route(conversation=conversation)
    if route is None:
        raise ValidationFailed("This conversation has no messages to reply to.")
    # The API's own send serializer for every channel: the same validation (addresses, body limits, types).
    payload = {
        "channel": conversation.channel,
        "from": route.from_address,
        "to": route.to_address,
        "body": body,
        "attachments": attachments,
    }
    serializer = SendAnyChannelSerializer(data=payload)
    try:
        serializer.is_valid(raise_exception=True)
    except DRFValidationError as exc:
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        raise ValidationFailed("The reply was not sent.", details=dict(details)) from None
    return SendCommand.from_validated(
        serializer.validated_data, client_message_id=f"{REPLY_KEY_PREFIX}{idempotency_key}"
    )


def conversation_reply(*, command: SendCommand) -> SendOutcome:
    """Sends a validated reply. A repeated idempotency key (a double submit of one rendered form) answers
    with the first message, and nothing is sent again."""
    return message_send(command=command)


@dataclass(frozen=True)
class Recount:
    #: Conversations whose ``message_count`` was not the number of their messages (now corrected).
    message_counts_fixed: int
    #: Whether the inbox tally was rebuilt (PostgreSQL only; elsewhere the inbox counts rows).
    tally_rebuilt: bool


def conversation_recount() -> Recount:
    """Recounts what page totals read instead of counting rows, after a bulk load that bypassed the
    service (rows copied in directly, triggers disabled by ``session_replication_role = replica`` or
    ``pg_restore --disable-triggers``): every conversation's ``message_count`` from its messages, and
    the inbox tally from the conversations. One transaction that holds writers off the two tables
    (``SHARE ROW EXCLUSIVE``) while it counts, so nothing written meanwhile is missed or counted twice."""
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    messages = connection.ops.quote_name(Message._meta.db_table)
    tally = connection.ops.quote_name(ConversationTally._meta.db_table)
    # An operator's command over every row: the request bounds do not apply; waiting for writers to
    # finish is bounded at a minute.
    with longer_bounds(statement=None, lock=60) as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {conversations}, {messages} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"UPDATE {conversations} AS c SET message_count = counted.n"
            f" FROM (SELECT c2.id, (SELECT count(*) FROM {messages} AS m WHERE m.conversation_id = c2.id) AS n"
            f" FROM {conversations} AS c2) AS counted"
            " WHERE c.id = counted.id AND c.message_count <> counted.n"
        )
        fixed = cursor.rowcount
        if connection.vendor != "postgresql":
            return Recount(message_counts_fixed=fixed, tally_rebuilt=False)
        cursor.execute(f"DELETE FROM {tally}")
        cursor.execute(
            f"INSERT INTO {tally} (shard, channel, status, archived, count)"
            f" SELECT 0, channel, status, archived_at IS NOT NULL, count(*) FROM {conversations}"
            " GROUP BY channel, status, archived_at IS NOT NULL"
        )
    return Recount(message_counts_fixed=fixed, tally_rebuilt=True)
