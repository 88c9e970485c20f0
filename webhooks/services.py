"""Webhook intake: every request stored, each provider event processed at most once.

Deduplication is the database's job: the first delivery of an event id saves a row with a claiming
outcome (``processed`` or ``orphan``), which a partial unique index on (provider, kind, event_id)
makes exclusive. A concurrent duplicate's write waits for the first transaction and then fails, so
exactly one delivery has an effect; the others are stored as ``duplicate`` (a repeat of an event kept
as an orphan also looks for its message again, in case its first delivery failed before it could).

Status events can arrive before the send that produced their provider id has committed. Such an
event is stored as ``orphan``. Both sides write first and look second: the event is committed, then
the message is looked up again; a batch of sends' provider ids is committed, then orphans are looked
up (``webhook_apply_orphans``). A single send looks in the statement that records its id, under a lock
that the callback's look again waits for (``orphans_lookup``, migration 0006). Either way one side
sees the other, and an orphan is claimed under a lock only while it is still one (``_adopt``), so it is
applied exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from core.database import ASYNCHRONOUS_COMMIT, longer_bounds
from core.errors import ApplicationError
from core.inserts import insert_parts, unsaved
from core.prepared import prepared_cursor
from messaging.models import Direction, Message
from messaging.selectors import message_find_outbound, message_find_outbound_many
from messaging.services import (
    inbound_validate,
    message_apply_status,
    message_apply_statuses,
    message_receive,
    message_receive_sql,
)
from messaging.signals import ProviderIdAssignment
from providers.base import (
    STATUS_CHANGES,
    UNKNOWN,
    InboundMessage,
    Provider,
    RawWebhook,
    SignatureInvalid,
    StatusEvent,
    WebhookEndpoint,
    WebhookItem,
)
from providers.registry import provider_by_stored_name
from webhooks.models import CLAIMING_OUTCOMES, WebhookEvent, WebhookKind, WebhookOutcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookResult:
    event: WebhookEvent
    message: Message | None

    @property
    def outcome(self) -> str:
        return self.event.outcome


#: The note of every event stored as ``duplicate``.
_DUPLICATE_NOTE = "already received"


def _event(raw: RawWebhook, *, outcome: str, event_id: str = "", **fields) -> WebhookEvent:
    return unsaved(
        WebhookEvent,
        provider=raw.provider,
        kind=raw.kind,
        event_id=event_id,
        outcome=outcome,
        headers=raw.headers,
        content_type=raw.content_type[:255],
        body=raw.body,
        body_exact=raw.body_exact,
        **fields,
    )


def _storable(text: str) -> str:
    """Text a PostgreSQL text column accepts: no NUL, no lone surrogates."""
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


def webhook_record_rejected(*, raw: RawWebhook, rejection: ApplicationError, event_id: str = "") -> WebhookEvent:
    event = _event(
        raw,
        outcome=WebhookOutcome.REJECTED,
        event_id=_storable(event_id[:255]),
        error=_storable(f"{rejection.code}: {rejection.message}"),
        rejection_code=rejection.code[:64],
    )
    event.save()
    return event


#: How much of a request that failed its signature check is kept. Anyone can send those, so keeping
#: them whole would let anyone fill the database; the start, the length and a digest are enough to
#: investigate, and such a request is never replayed anyway.
UNVERIFIED_BODY_KEPT = 4096


def webhook_record_unverified(*, raw: RawWebhook, invalid: SignatureInvalid) -> WebhookEvent:
    """Keeps a request that failed its signature check: headers, the body's start, length and digest.
    Marked with the rejection code, so it is never replayed."""
    kept = raw.body[:UNVERIFIED_BODY_KEPT]
    event = _event(
        raw,
        outcome=WebhookOutcome.REJECTED,
        error=_storable(f"{invalid.code}: {invalid.message}"),
        rejection_code=invalid.code,
    )
    event.body = kept
    event.body_exact = kept == raw.body and raw.body_exact
    if not event.body_exact:
        digest = hashlib.sha256(raw.raw_bytes).hexdigest()
        event.note = f"body truncated: {len(raw.raw_bytes)} bytes, sha256 {digest}"
    event.save()
    return event


def _claim_of(event: WebhookEvent) -> WebhookEvent | None:
    return (
        WebhookEvent.objects.filter(
            provider=event.provider, kind=event.kind, event_id=event.event_id, outcome__in=CLAIMING_OUTCOMES
        )
        .exclude(pk=event.pk)
        .select_related("message")
        .first()
    )


def _save_duplicate(event: WebhookEvent, *, original: Message | None) -> WebhookEvent:
    event.outcome = WebhookOutcome.DUPLICATE
    event.message = original
    event.processed_at = timezone.now()
    event.note = _DUPLICATE_NOTE
    event.save()
    return event


def _save_error(event: WebhookEvent, exc: Exception) -> None:
    """Keeps a request whose processing failed; it claims nothing, so the provider's retry is processed."""
    logger.exception("Webhook %s/%s %s failed", event.provider, event.kind, event.event_id)
    event.outcome = WebhookOutcome.ERROR
    event.error = _storable(f"{type(exc).__name__}: {exc}")
    event.event_id = event.event_id[:255]
    event.note = event.note[:255]
    try:
        event.save()
    except DatabaseError:
        # Keeping the record must never mask the original failure; the log above has it.
        logger.exception("Could not store the failed webhook %s/%s", event.provider, event.kind)


# The pipeline: keep raw -> (verified by the view) -> parse -> dedupe -> apply ----------------------


@dataclass(frozen=True)
class ItemResult:
    """What became of one item of a request."""

    index: int
    event_id: str
    outcome: str
    #: inbound or status.
    kind: str
    message_id: int | None
    #: Why the item was rejected or failed; None when it was processed (or was a duplicate/orphan).
    error: str | None = None
    rejection: ApplicationError | None = None


def webhook_ingest(*, endpoint: WebhookEndpoint, raw: RawWebhook) -> list[ItemResult]:
    """Parses a verified request with its provider's endpoint and processes every item on its own.

    A request that does not read at all raises its ``ApplicationError`` (stored as rejected first); an
    item that does not read is stored as rejected and the others go on.
    """
    try:
        items = endpoint.parse(raw)
    except ApplicationError as rejection:
        webhook_record_rejected(raw=raw, rejection=rejection)
        raise
    if not endpoint.batch:
        return [_ingest_item(index, item, batch=False) for index, item in enumerate(items)]
    # A batch's status events go together (a few statements for the lot); the rest one by one.
    statuses = [
        (index, item)
        for index, item in enumerate(items)
        if isinstance(item.parsed, StatusEvent) and item.rejection is None
    ]
    results = {index: result for index, result in _ingest_statuses(statuses)}
    for index, item in enumerate(items):
        if index not in results:
            results[index] = _ingest_item(index, item, batch=True)
    return [results[index] for index in range(len(items))]


def _ingest_item(index: int, item: WebhookItem, *, batch: bool) -> ItemResult:
    parsed = item.parsed
    rejection = item.rejection
    if isinstance(parsed, InboundMessage):
        try:
            parsed = inbound_validate(inbound=parsed)
        except ApplicationError as invalid:
            rejection = invalid
    if rejection is not None or parsed is None:
        rejection = rejection or ApplicationError("The event could not be read.")
        webhook_record_rejected(raw=item.raw, rejection=rejection, event_id=item.event_id)
        return ItemResult(
            index=index,
            kind=item.kind,
            event_id=item.event_id or "",
            outcome=WebhookOutcome.REJECTED,
            message_id=None,
            error=rejection.message,
            rejection=rejection,
        )
    try:
        if isinstance(parsed, InboundMessage):
            result = webhook_receive_inbound(raw=item.raw, inbound=parsed)
        else:
            result = webhook_receive_status(raw=item.raw, status=parsed)
    except (OperationalError, InterfaceError):
        raise  # the database is unreachable: answer so that the provider delivers the request again
    except Exception:
        if not batch:
            raise
        # Stored as an error (and logged) on the way out; the provider's retry or a replay redoes it.
        return ItemResult(
            index=index,
            kind=item.kind,
            event_id=item.event_id,
            outcome=WebhookOutcome.ERROR,
            message_id=None,
            error="Processing failed; stored for replay.",
        )
    return ItemResult(
        index=index,
        kind=item.kind,
        event_id=result.event.event_id,
        outcome=result.outcome,
        message_id=result.event.message_id,
    )


# Status events of a batch, together -----------------------------------------------------------------


def _ingest_statuses(statuses: list[tuple[int, WebhookItem]]) -> list[tuple[int, ItemResult]]:
    """The status events of one batch with the guarantees of ``webhook_receive_status`` one by one,
    in a few statements: messages found in one query, duplicates told from existing claims in one,
    statuses applied with the messages locked, every event stored in one INSERT. A claim that a
    concurrent delivery took meanwhile fails that INSERT; the batch then goes one event at a time."""
    if not statuses:
        return []
    try:
        with transaction.atomic():
            events = _claim_statuses([item for _, item in statuses])
    except (OperationalError, InterfaceError):
        raise  # the database is unreachable: answer so that the provider delivers the batch again
    except Exception:
        # A claim taken concurrently (IntegrityError), or anything unexpected: nothing was written;
        # one event at a time, a failing event is stored as an error alone and the rest go on.
        logger.warning("Status batch of %s event(s) processed one by one", len(statuses), exc_info=True)
        return [(index, _ingest_item(index, item, batch=True)) for index, item in statuses]
    _look_again_for_orphans(events, [item for _, item in statuses])
    return [
        (
            index,
            ItemResult(
                index=index,
                kind=event.kind,
                event_id=event.event_id,
                outcome=event.outcome,
                message_id=event.message_id,
            ),
        )
        for (index, _), event in zip(statuses, events, strict=True)
    ]


def _claim_statuses(items: list[WebhookItem]) -> list[WebhookEvent]:
    parsed = [item.parsed for item in items]
    assert all(isinstance(status, StatusEvent) for status in parsed)
    statuses: list[StatusEvent] = parsed  # type: ignore[assignment]
    provider = statuses[0].provider
    adapter = provider_by_stored_name(provider)
    messages = message_find_outbound_many(
        provider=provider, provider_message_ids=[status.provider_message_id for status in statuses]
    )
    claims: dict[str, int | None] = dict(
        WebhookEvent.objects.filter(
            provider=provider,
            kind=WebhookKind.STATUS,
            event_id__in=[status.event_id for status in statuses],
            outcome__in=CLAIMING_OUTCOMES,
        ).values_list("event_id", "message_id")
    )
    now = timezone.now()
    events, changes, changing = [], [], []
    for item, status in zip(items, statuses, strict=True):
        event = _event(item.raw, outcome=WebhookOutcome.ORPHAN, event_id=status.event_id)
        event.event_type = status.event_type
        event.provider_message_id = adapter.canonical_message_id(status.provider_message_id)
        message_id = messages.get(status.provider_message_id)
        if status.event_id in claims:
            event.outcome, event.message_id, event.note = (
                WebhookOutcome.DUPLICATE,
                claims[status.event_id],
                _DUPLICATE_NOTE,
            )
            event.processed_at = now
        elif message_id is None:
            event.note = "message not known yet"
            claims[status.event_id] = None
        else:
            event.outcome, event.message_id, event.processed_at = WebhookOutcome.PROCESSED, message_id, now
            claims[status.event_id] = message_id
            if status.meaning in STATUS_CHANGES:
                changes.append((message_id, status.meaning, status.error))
                changing.append(event)
            else:
                event.note = _note_without_change(status, message_id)[:255]
        events.append(event)
    for event, note in zip(changing, message_apply_statuses(changes=changes), strict=True):
        event.note = note[:255]
    return WebhookEvent.objects.bulk_create(events, batch_size=1000)


def _look_again_for_orphans(events: list[WebhookEvent], items: list[WebhookItem]) -> None:
    """The batch is committed; a send that committed its provider id meanwhile is found now for the
    orphans the batch stored, and for the orphans stored earlier whose events it brought again: a
    retry of a batch whose first delivery may have failed between its commit and its look again.
    Those earlier orphans are applied as they were stored (a retry's payload is not theirs to
    change), all of them in arrival order with the batch's own. A failed look fails the batch only
    when it stored orphans of its own, as a first delivery's does (the provider delivers it again,
    and that retry looks again); a retry's alone never does: its earlier orphans stay for
    ``replay_webhooks``, as before a retry looked."""
    own: list[tuple[WebhookEvent, StatusEvent]] = []
    retried: list[WebhookEvent] = []
    for event, item in zip(events, items, strict=True):
        if not isinstance(item.parsed, StatusEvent):
            continue
        if event.outcome == WebhookOutcome.ORPHAN:
            own.append((event, item.parsed))
        elif event.outcome == WebhookOutcome.DUPLICATE and event.message_id is None:
            retried.append(event)
    claims: list[WebhookEvent] = []
    earlier: list[tuple[WebhookEvent, StatusEvent]] = []
    if retried:
        try:
            claims, earlier = _earlier_orphans(retried, own={event.pk for event, _ in own})
        except Exception:
            logger.warning("Could not look again for the orphans a batch brought again", exc_info=True)
    if own or earlier:
        try:
            _adopt_found([*own, *earlier])
        except Exception:
            if own:
                raise  # the provider delivers the batch again, and its retry looks again
            logger.warning("Could not look again for the orphans a batch brought again", exc_info=True)
            return
    _name_adopted(retried, [*claims, *(event for event, _ in own)])


def _readable_orphans(claims: list[WebhookEvent]) -> list[tuple[WebhookEvent, StatusEvent]]:
    """Orphans with their statuses as stored; one whose stored body is not exact, or does not read
    (as ``webhook_replay`` would refuse it), is left to the operator."""
    readable = []
    for claim in claims:
        if not claim.body_exact:
            continue
        try:
            readable.append((claim, _stored_status(provider_by_stored_name(claim.provider), claim)))
        except Exception:
            logger.warning("Orphan %s does not read as stored; left for replay_webhooks", claim.pk, exc_info=True)
    return readable


def _earlier_orphans(
    duplicates: list[WebhookEvent], *, own: set[int]
) -> tuple[list[WebhookEvent], list[tuple[WebhookEvent, StatusEvent]]]:
    """The claims of these duplicates (one query), and those still orphans that this batch did not
    store itself, each with its status as it was stored."""
    provider = duplicates[0].provider
    claims = list(
        WebhookEvent.objects.filter(
            provider=provider,
            kind=WebhookKind.STATUS,
            outcome__in=CLAIMING_OUTCOMES,
            event_id__in=[event.event_id for event in duplicates],
        )
    )
    orphans = _readable_orphans(
        [claim for claim in claims if claim.outcome == WebhookOutcome.ORPHAN and claim.pk not in own]
    )
    return claims, orphans


def _adopt_found(orphans: list[tuple[WebhookEvent, StatusEvent]]) -> None:
    """Waits for the sends holding these orphans' ids (``_wait_for_assignments``), finds their messages
    in one query and adopts those found (``_adopt``). The events are updated in memory, those a send
    adopted meanwhile read again."""
    _wait_for_assignments([event for event, _ in orphans])
    found = message_find_outbound_many(
        provider=orphans[0][1].provider,
        provider_message_ids=[status.provider_message_id for _, status in orphans],
    )
    matched = [
        (event, found[status.provider_message_id], status)
        for event, status in orphans
        if status.provider_message_id in found
    ]
    adopted = _adopt(matched)
    for event, _, _ in matched:
        if event.pk not in adopted:
            event.refresh_from_db()  # adopted meanwhile by its send


def _adopt(matched: list[tuple[WebhookEvent, int, StatusEvent]]) -> set[int]:
    """Applies orphans to the messages that have now appeared (event, message id, status as stored), in
    arrival order and in one transaction, unless someone else already did: the events still orphans
    claimed under a lock (a concurrent adopter waits, then finds them claimed), their statuses applied
    with ``message_apply_statuses``, the events written in one statement. Returns the ids of the events
    adopted here, which are updated in memory."""
    if not matched:
        return set()
    matched = sorted(matched, key=lambda each: each[0].pk)
    with transaction.atomic():
        still_orphans = set(
            WebhookEvent.objects.select_for_update()
            .filter(pk__in=[event.pk for event, _, _ in matched], outcome=WebhookOutcome.ORPHAN)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        adopting = [each for each in matched if each[0].pk in still_orphans]
        changes = [
            (message_id, status.meaning, status.error)
            for _, message_id, status in adopting
            if status.meaning in STATUS_CHANGES
        ]
        notes = iter(message_apply_statuses(changes=changes)) if changes else iter(())
        now = timezone.now()
        for event, message_id, status in adopting:
            note = next(notes) if status.meaning in STATUS_CHANGES else _note_without_change(status, message_id)
            event.outcome, event.message_id, event.processed_at = WebhookOutcome.PROCESSED, message_id, now
            event.note = f"{note} (arrived before the message)"[:255]
        WebhookEvent.objects.bulk_update(
            [event for event, _, _ in adopting], ["outcome", "message", "processed_at", "note"], batch_size=1000
        )
    return still_orphans


def _name_adopted(duplicates: list[WebhookEvent], claims: list[WebhookEvent]) -> None:
    """Duplicates that named no message name the one their claim names now (one statement). Only a
    record's detail: a failure is logged, and the duplicates stay as stored."""
    adopted = {claim.event_id: claim.message_id for claim in claims if claim.message_id is not None}
    naming = [duplicate for duplicate in duplicates if duplicate.message_id is None and duplicate.event_id in adopted]
    if not naming:
        return
    for duplicate in naming:
        duplicate.message_id = adopted[duplicate.event_id]
    try:
        WebhookEvent.objects.bulk_update(naming, ["message"], batch_size=1000)
    except Exception:
        logger.warning("Could not name the messages of %s duplicate(s)", len(naming), exc_info=True)
        for duplicate in naming:
            duplicate.message_id = None


# Inbound messages ---------------------------------------------------------------------------------


def webhook_receive_inbound(*, raw: RawWebhook, inbound: InboundMessage) -> WebhookResult:
    """Stores the event and its message together; a repeated event id creates nothing new."""
    event = _event(raw, outcome=WebhookOutcome.PROCESSED, event_id=inbound.provider_message_id)
    if connection.vendor == "postgresql":
        try:
            with _savepoint_if_nested():
                return _receive_inbound_in_one_statement(event, inbound)
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable: answer so that the provider delivers the request again
        except DatabaseError:
            # Something the one statement does not handle (a message stored under this provider id
            # without a claiming event, e.g. after pruning; a sequence renamed since it was looked up):
            # nothing was written; the general path decides.
            _forget_message_sequence()
            logger.info("Inbound %s: taking the general path", inbound.provider_message_id, exc_info=True)
            event.pk, event.outcome, event.note, event.processed_at = None, WebhookOutcome.PROCESSED, "", None
        except Exception as exc:
            event.pk, event.message, event.note, event.processed_at = None, None, "", None
            _save_error(event, exc)
            raise
    return _process_inbound(event, inbound)


def _savepoint_if_nested():
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


#: The message id is drawn before anything is written, so the claiming event can name its message in
#: the same statement (the foreign key is checked at commit, when the message exists). A delivery
#: whose claim is refused is stored in the same statement as ``duplicate`` naming the original's
#: message: ``webhook_claiming_message()`` (migration webhooks 0005) reads the claim with a snapshot
#: of its own, so it also sees an original that committed while the claim waited for it.
#: ``{event_param[...]}`` are the ``$n`` of the claim's own parameters, so the duplicate row and the
#: original's lookup reuse them (the statement is prepared: core/prepared.py).
_INBOUND_STATEMENT = """
WITH new_message AS (SELECT nextval(%s::regclass) AS id),
claim AS (
    INSERT INTO {event_table} (message_id, {event_columns})
    SELECT new_message.id, {event_placeholders} FROM new_message
    ON CONFLICT DO NOTHING
    RETURNING id, message_id
),
original AS (
    SELECT webhook_claiming_message({event_param[provider]}, {event_param[kind]}, {event_param[event_id]}) AS message_id
    WHERE NOT EXISTS (SELECT FROM claim)
),
duplicate AS (
    INSERT INTO {event_table} (message_id, {event_columns})
    SELECT original.message_id, {duplicate_values} FROM original WHERE original.message_id IS NOT NULL
    RETURNING id, message_id
),
{receive}
SELECT claim.id, claim.message_id, false FROM claim
UNION ALL SELECT duplicate.id, duplicate.message_id, {duplicate_flag} FROM duplicate
"""

#: The duplicate's flag when its record may commit asynchronously: evaluated only when a duplicate was
#: stored, so a new message's commit always waits for its flush.
_DUPLICATE_COMMITS_ASYNCHRONOUSLY = f"{ASYNCHRONOUS_COMMIT} IS NOT NULL"

#: A duplicate whose claim names no message (the message was deleted): the message stored under the
#: provider's id, if any, in a statement of its own.
_DUPLICATE_STATEMENT = """
INSERT INTO {event_table} (message_id, {event_columns})
SELECT COALESCE(
    (SELECT message_id FROM {event_table} WHERE provider = %s AND kind = %s AND event_id = %s
        AND outcome = ANY(%s) AND message_id IS NOT NULL LIMIT 1),
    (SELECT id FROM {message_table} WHERE direction = %s AND provider = %s AND provider_message_id = %s LIMIT 1)
), {event_placeholders}
RETURNING id, message_id
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@functools.cache
def _inbound_statement(
    event_columns: tuple[str, ...],
    event_placeholders: tuple[str, ...],
    receive_sql: str,
    asynchronous_duplicate: bool = False,
) -> tuple[str, Mapping[str, str]]:
    """``_INBOUND_STATEMENT`` for these columns and this message INSERT (the same few shapes on every
    request), and the names ``_DUPLICATE_STATEMENT`` takes. With ``asynchronous_duplicate``, a
    duplicate's record commits without waiting for its WAL flush (``_duplicate_commits_asynchronously``)."""
    # $1 is the name of the messages' id sequence; the event's parameters follow, one per column (an event
    # holds plain values only, so insert_parts gives each column one %s).
    if event_placeholders != ("%s",) * len(event_columns):
        raise TypeError("an inbound event's columns must each take one parameter")
    numbers = {column: f"${position}" for position, column in enumerate(event_columns, start=2)}
    quote = connection.ops.quote_name
    duplicate_values = dict(numbers)
    duplicate_values[quote("outcome")] = _literal(WebhookOutcome.DUPLICATE)
    duplicate_values[quote("note")] = _literal(_DUPLICATE_NOTE)
    tables = {
        "event_table": quote(WebhookEvent._meta.db_table),
        "message_table": quote(Message._meta.db_table),
        "event_columns": ", ".join(event_columns),
        "event_placeholders": ", ".join(event_placeholders),
    }
    statement = _INBOUND_STATEMENT.format(
        receive=receive_sql,
        event_param={name: numbers[quote(name)] for name in ("provider", "kind", "event_id")},
        duplicate_values=", ".join(duplicate_values[column] for column in event_columns),
        duplicate_flag=_DUPLICATE_COMMITS_ASYNCHRONOUSLY if asynchronous_duplicate else "true",
        **tables,
    )
    return statement, MappingProxyType(tables)  # shared by every request: read-only


def _receive_inbound_in_one_statement(event: WebhookEvent, inbound: InboundMessage) -> WebhookResult:
    """The inbound pipeline in one round trip (PostgreSQL): claim the event id with ``INSERT ... ON
    CONFLICT DO NOTHING`` on the partial unique index, and only if the claim is taken upsert the
    conversation with its counters and insert the message, all in one statement, so one transaction.
    A duplicate does no conversation work: it is stored as ``duplicate`` naming the original's
    message, in the same statement (even when the original was concurrent and the claim waited for
    its commit), or in a second one when the original's claim names no message."""
    event.processed_at = timezone.now()
    event_columns, event_placeholders, event_params = insert_parts(event, exclude=frozenset({"message_id"}))
    receive_sql, receive_params = message_receive_sql(inbound=inbound, source="claim", message_id="claim.message_id")
    statement, tables = _inbound_statement(
        tuple(event_columns), tuple(event_placeholders), receive_sql, _duplicate_commits_asynchronously()
    )
    with prepared_cursor() as cursor:
        cursor.execute(statement, [_message_sequence(cursor), *event_params, *receive_params])
        stored = cursor.fetchone()
        if stored is not None:
            event.pk, event.message_id, duplicate = stored
            if duplicate:
                event.outcome, event.note = WebhookOutcome.DUPLICATE, _DUPLICATE_NOTE
            return WebhookResult(event=event, message=None)
        event.outcome, event.note = WebhookOutcome.DUPLICATE, _DUPLICATE_NOTE
        _, duplicate_placeholders, duplicate_params = insert_parts(event, exclude=frozenset({"message_id"}))
        cursor.execute(
            _DUPLICATE_STATEMENT.format(**{**tables, "event_placeholders": ", ".join(duplicate_placeholders)}),
            [
                event.provider,
                event.kind,
                event.event_id,
                list(CLAIMING_OUTCOMES),
                Direction.INBOUND,
                inbound.provider,
                inbound.provider_message_id,
                *duplicate_params,
            ],
        )
        event.pk, event.message_id = cursor.fetchone()
    return WebhookResult(event=event, message=None)


def _duplicate_commits_asynchronously() -> bool:
    """Whether an inbound statement that finds its event id claimed may commit its ``duplicate`` record
    without waiting for PostgreSQL to flush its WAL (``DB_ASYNC_DUPLICATE_COMMIT``).

    A database crash in the moment after (three ``wal_writer_delay`` at most, 600 ms by default) may
    lose that record and nothing else: the message and the delivery that claimed its id committed
    synchronously before the duplicate could see them (a synchronous commit is flushed before it
    becomes visible, on one server; a synchronous standby's case is in docs/OPERATIONS.md), so the
    provider, answered ``duplicate``, has lost nothing, and its next repeat is answered from the same
    claim. A statement that stores a new message never turns it off.

    Only as a statement that is its own transaction, so the setting never reaches a caller's writes;
    any later synchronous commit flushes the WAL up to itself, the records before it included."""
    return settings.DB_ASYNC_DUPLICATE_COMMIT and connection.get_autocommit()


def _message_sequence(cursor: CursorWrapper) -> str:
    """The qualified name of the messages' id sequence, looked up once per database connection: the
    lookup (``pg_get_serial_sequence``, a scan of the catalog's dependencies) cost 5-35 us of the
    server's time on every inbound message when the statement made it (docs/PERFORMANCE.md,
    eighteenth round)."""
    pg_connection = cursor.db.connection
    name = getattr(pg_connection, "_service_message_sequence", None)
    if name is None:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Message._meta.db_table])
        (name,) = cursor.fetchone()
        if name is None:
            raise DatabaseError(f"{Message._meta.db_table}.id draws from no sequence")
        pg_connection._service_message_sequence = name
    return name


def _forget_message_sequence() -> None:
    """Looks the sequence up again at the next inbound message (after a statement failed)."""
    if connection.connection is not None:
        connection.connection.__dict__.pop("_service_message_sequence", None)


def _process_inbound(event: WebhookEvent, inbound: InboundMessage) -> WebhookResult:
    try:
        with transaction.atomic():
            message = message_receive(inbound=inbound)
            event.outcome = WebhookOutcome.PROCESSED
            event.event_id = inbound.provider_message_id
            event.message = message
            event.processed_at = timezone.now()
            event.error = ""
            event.save()
    except IntegrityError as exc:
        event.message = None
        original = _inbound_original(event, inbound)
        if original is None:
            _save_error(event, exc)
            raise
        return WebhookResult(event=_save_duplicate(event, original=original), message=original)
    except Exception as exc:
        event.message = None
        _save_error(event, exc)
        raise
    return WebhookResult(event=event, message=message)


def _inbound_original(event: WebhookEvent, inbound: InboundMessage) -> Message | None:
    """The message an earlier delivery of this event created, if that is why the write failed."""
    claim = _claim_of(event)
    if claim is not None and claim.message is not None:
        return claim.message
    return Message.objects.filter(
        direction=Direction.INBOUND, provider=inbound.provider, provider_message_id=inbound.provider_message_id
    ).first()


# Status callbacks ---------------------------------------------------------------------------------


def webhook_receive_status(*, raw: RawWebhook, status: StatusEvent) -> WebhookResult:
    """Stores one status event and applies it to its message, or keeps it as an orphan."""
    event = _event(raw, outcome=WebhookOutcome.ORPHAN, event_id=status.event_id)
    return _process_status(event, status)


def _process_status(event: WebhookEvent, status: StatusEvent) -> WebhookResult:
    event.event_id = status.event_id
    event.event_type = status.event_type
    event.provider_message_id = provider_by_stored_name(status.provider).canonical_message_id(
        status.provider_message_id
    )
    event.error = ""
    try:
        with transaction.atomic():
            message = message_find_outbound(provider=status.provider, provider_message_id=status.provider_message_id)
            if message is None:
                event.outcome = WebhookOutcome.ORPHAN
                event.note = "message not known yet"
                event.save()
            else:
                event.outcome = WebhookOutcome.PROCESSED
                event.message = message
                event.processed_at = timezone.now()
                event.note = _apply(status, message)[:255]
                event.save()
    except IntegrityError as exc:
        event.message = None
        claim = _claim_of(event)
        if claim is None:
            _save_error(event, exc)
            raise
        duplicate = _save_duplicate(event, original=claim.message)
        if claim.outcome == WebhookOutcome.ORPHAN:
            _look_again_for_earlier(claim, duplicate)
        return WebhookResult(event=duplicate, message=duplicate.message)
    except Exception as exc:
        event.message = None
        _save_error(event, exc)
        raise
    if event.outcome == WebhookOutcome.ORPHAN:
        # The event is committed; if the send committed its provider id meanwhile, apply it now.
        _look_again(event, status)
    return WebhookResult(event=event, message=event.message)


def _look_again(orphan: WebhookEvent, status: StatusEvent) -> None:
    """A committed orphan's look again for its message."""
    _wait_for_assignments([orphan])
    message = message_find_outbound(provider=status.provider, provider_message_id=status.provider_message_id)
    if message is not None:
        _adopt_orphan(orphan, message, status)
        orphan.refresh_from_db()


def _look_again_for_earlier(claim: WebhookEvent, duplicate: WebhookEvent) -> None:
    """A retry of an event kept as an orphan: its first delivery may have failed between committing
    the orphan and looking again, so the retry looks in its place, for the orphan as it was stored
    (not as the retry tells it), and its duplicate names the message found. A failure here never
    fails the retry, which is stored: the orphan stays for ``replay_webhooks``, as before."""
    readable = _readable_orphans([claim])
    if not readable:
        return
    try:
        _look_again(*readable[0])
    except Exception:
        logger.warning(
            "Could not look again for orphan %s brought again by event %s", claim.pk, duplicate.pk, exc_info=True
        )
        return
    _name_adopted([duplicate], [claim])
    duplicate.message = claim.message if duplicate.message_id is not None else None


def _apply(status: StatusEvent, message: Message) -> str:
    if status.meaning in STATUS_CHANGES:
        return message_apply_status(message_id=message.pk, status=status.meaning, error=status.error)
    return _note_without_change(status, message.pk)


def _note_without_change(status: StatusEvent, message_id: int) -> str:
    if status.meaning == UNKNOWN:
        logger.warning(
            "Unknown %s status %r for message %s; kept, no change", status.provider, status.event_type, message_id
        )
        return f"unknown status {status.event_type!r}: recorded, no change"
    return f"recorded ({status.event_type}), no change"


def _adopt_orphan(event: WebhookEvent, message: Message, status: StatusEvent) -> bool:
    """``_adopt`` for one orphan: whether it was adopted here."""
    return bool(_adopt([(event, message.pk, status)]))


def webhook_apply_orphans(*, provider: str, provider_message_id: str, message_id: int) -> int:
    """Applies the status events that arrived for a provider id before its message was stored."""
    adapter = provider_by_stored_name(provider)
    canonical = adapter.canonical_message_id(provider_message_id)
    if not _has_orphans(provider=provider, provider_message_id=canonical):
        return 0  # the usual case: one lookup on the partial orphan index, nothing else
    orphans = list(
        WebhookEvent.objects.filter(
            provider=provider,
            kind=WebhookKind.STATUS,
            outcome=WebhookOutcome.ORPHAN,
            provider_message_id=canonical,
        ).order_by("id")
    )
    applied = len(_adopt([(orphan, message_id, _stored_status(adapter, orphan)) for orphan in orphans]))
    if applied:
        logger.info("Applied %s early status event(s) to message %s", applied, message_id)
    return applied


#: Written out once rather than built by the ORM on every send that gets a provider id; the outcome
#: and kind are literals so the partial orphan index applies whatever the parameters are bound as.
_ORPHAN_EXISTS = (
    f"SELECT 1 FROM {WebhookEvent._meta.db_table} WHERE outcome = '{WebhookOutcome.ORPHAN}'"
    f" AND kind = '{WebhookKind.STATUS}' AND provider = %s AND provider_message_id = %s LIMIT 1"
)


def orphans_lookup(assignment: ProviderIdAssignment) -> tuple[str, list[str]]:
    """Whether orphans wait for a new assignment, for messaging to ask in the statement that records it
    (messaging.signals.register_assignment_lookup). ``webhook_orphans_waiting()`` (migration 0006)
    tries the lock that a callback's look again waits for (``_wait_for_assignments``) and reads with a
    snapshot of its own: true or false, held until the assignment commits; NULL when another
    transaction holds it (a callback waiting, or a send whose pair hashes alike), so the sender's
    receivers look after the commit. Its condition is ``_ORPHAN_EXISTS``'s, written in the migration."""
    canonical = provider_by_stored_name(assignment.provider).canonical_message_id(assignment.provider_message_id)
    return "webhook_orphans_waiting(%s, %s)", [assignment.provider, canonical]


#: How long a callback's look again waits for the sends holding its ids' locks (each from its outcome's
#: statement to that statement's commit): a bound for a stalled commit, far above the request's usual
#: lock and statement timeouts, which would otherwise leave the orphan to whichever side fails last.
ASSIGNMENT_WAIT_SECONDS = 30


def _wait_for_assignments(orphans: list[WebhookEvent]) -> None:
    """Before a committed orphan's look again: waits for any send that holds its id's lock, having
    found no orphan in the statement that records that id, to commit (migration 0006), so the look
    sees it. Nothing to wait for on other databases, where sends look after their commit."""
    if connection.vendor != "postgresql":
        return
    with longer_bounds(statement=ASSIGNMENT_WAIT_SECONDS, lock=ASSIGNMENT_WAIT_SECONDS) as cursor:
        cursor.execute(
            "SELECT webhook_wait_for_assignments(%s::varchar[], %s::varchar[])",
            [[event.provider for event in orphans], [event.provider_message_id for event in orphans]],
        )


def _has_orphans(*, provider: str, provider_message_id: str) -> bool:
    with prepared_cursor() as cursor:
        cursor.execute(_ORPHAN_EXISTS, [provider, provider_message_id])
        return cursor.fetchone() is not None


def webhook_apply_orphans_many(*, assignments: list[ProviderIdAssignment]) -> int:
    """``webhook_apply_orphans`` for a batch of newly assigned provider ids: one lookup on the partial
    orphan index for the whole batch, then the messages that have orphans one at a time."""
    if len(assignments) == 1:
        [one] = assignments
        return webhook_apply_orphans(
            provider=one.provider, provider_message_id=one.provider_message_id, message_id=one.message_id
        )
    by_key: dict[tuple[str, str], list[ProviderIdAssignment]] = {}
    for assignment in assignments:
        canonical = provider_by_stored_name(assignment.provider).canonical_message_id(assignment.provider_message_id)
        by_key.setdefault((assignment.provider, canonical), []).append(assignment)
    providers = sorted({provider for provider, _ in by_key})
    canonicals = sorted({canonical for _, canonical in by_key})
    found = _orphaned(providers=providers, provider_message_ids=canonicals)
    applied = 0
    for key in sorted(found & by_key.keys()):
        for assignment in by_key[key]:
            applied += webhook_apply_orphans(
                provider=assignment.provider,
                provider_message_id=assignment.provider_message_id,
                message_id=assignment.message_id,
            )
    return applied


def _orphaned(*, providers: list[str], provider_message_ids: list[str]) -> set[tuple[str, str]]:
    """(provider, provider message id) pairs among these with an orphaned status event."""
    if connection.vendor != "postgresql":
        return set(
            WebhookEvent.objects.filter(
                provider__in=providers,
                kind=WebhookKind.STATUS,
                outcome=WebhookOutcome.ORPHAN,
                provider_message_id__in=provider_message_ids,
            ).values_list("provider", "provider_message_id")
        )
    with prepared_cursor() as cursor:
        cursor.execute(_ORPHANS_AMONG, [providers, provider_message_ids])
        return {(provider, provider_message_id) for provider, provider_message_id in cursor.fetchall()}


#: The orphaned status events among a batch's provider ids: one prepared statement for any batch, with
#: the outcome and kind written in as in ``_ORPHAN_EXISTS``.
_ORPHANS_AMONG = (
    f"SELECT provider, provider_message_id FROM {WebhookEvent._meta.db_table} WHERE outcome = '{WebhookOutcome.ORPHAN}'"
    f" AND kind = '{WebhookKind.STATUS}' AND provider = ANY(%s::text[]) AND provider_message_id = ANY(%s::text[])"
)


# Replay -------------------------------------------------------------------------------------------

#: Outcomes a replay can change. Processed and duplicate events already had their effect.
REPLAYABLE_OUTCOMES = [WebhookOutcome.ORPHAN, WebhookOutcome.REJECTED, WebhookOutcome.ERROR]


@dataclass(frozen=True)
class ReplayResult:
    event: WebhookEvent
    before: str
    after: str
    detail: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def webhook_replay(*, event: WebhookEvent) -> ReplayResult:
    """Processes a stored event again, as if the provider had just delivered it.

    Idempotent: an event that was processed (or is a duplicate) is left alone, and one that is
    processed by this replay is left alone by the next.
    """
    before = event.outcome
    if before not in REPLAYABLE_OUTCOMES:
        return ReplayResult(event=event, before=before, after=before, detail="already processed; nothing to do")
    if not event.body_exact:
        # Invalid UTF-8 or NUL was replaced when it was stored: replaying would process other bytes.
        return ReplayResult(event=event, before=before, after=before, detail="stored body is not exact; never replayed")
    if event.rejection_code == SignatureInvalid.code:
        # Nobody proved this request came from the provider; replaying it would act on a forgery.
        return ReplayResult(event=event, before=before, after=before, detail="signature was invalid; never replayed")
    if event.kind == WebhookKind.DELIVERY:
        # A whole delivery refused before its items could be told apart: there is no item to process.
        return ReplayResult(event=event, before=before, after=before, detail="whole request refused; nothing to replay")
    try:
        item = provider_by_stored_name(event.provider).parse_stored(raw_from_event(event))
        parsed = item.parsed
        if item.rejection is not None or parsed is None:
            raise item.rejection or ApplicationError("The event could not be read.")
        if isinstance(parsed, InboundMessage):
            inbound = inbound_validate(inbound=parsed)
        else:
            status = parsed
    except ApplicationError as rejection:
        return ReplayResult(event=event, before=before, after=before, detail=f"still invalid: {rejection.message}")
    try:
        if isinstance(parsed, InboundMessage):
            _process_inbound(event, inbound)
        elif before == WebhookOutcome.ORPHAN:
            message = message_find_outbound(provider=status.provider, provider_message_id=status.provider_message_id)
            if message is None:
                return ReplayResult(event=event, before=before, after=before, detail="message still not known")
            _adopt_orphan(event, message, status)
        else:
            _process_status(event, status)
    except Exception as exc:
        event.refresh_from_db()
        return ReplayResult(event=event, before=before, after=event.outcome, detail=f"failed: {type(exc).__name__}")
    WebhookEvent.objects.filter(pk=event.pk).update(replayed_at=timezone.now())
    event.refresh_from_db()
    return ReplayResult(event=event, before=before, after=event.outcome, detail=event.note or event.outcome)


def raw_from_event(event: WebhookEvent) -> RawWebhook:
    """A stored WebhookEvent as the request it was, to be processed again."""
    return RawWebhook(
        provider=event.provider,
        kind=event.kind,
        headers=event.headers,
        content_type=event.content_type,
        body=event.body,
        raw_bytes=event.body.encode("utf-8"),
        body_exact=event.body_exact,
    )


def _stored_status(provider: Provider, event: WebhookEvent) -> StatusEvent:
    parsed = provider.parse_stored(raw_from_event(event)).parsed
    if not isinstance(parsed, StatusEvent):
        raise ApplicationError(f"Stored event {event.pk} is not a status event.")
    return parsed
