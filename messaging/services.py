"""Send, deliver and receive messages.

Sending follows "persist, commit, then call": the message is stored ``pending`` in one transaction,
the provider is called with no transaction open, and the outcome is recorded with a status-guarded
UPDATE. A crash between the steps leaves a ``pending`` row that the outbox retries, never a lost one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, ProgrammingError, connection, transaction
from django.utils import timezone

from conversations.channels import CHANNELS
from conversations.services import (
    conversation_get_or_create,
    conversation_record_message,
    conversation_upsert_counting_sql,
    message_preview,
)
from core.admission import waiting_outside
from core.database import ASYNCHRONOUS_COMMIT, DATABASE_UNAVAILABLE
from core.errors import Conflict, IdempotencyKeyReused, ValidationFailed
from core.exceptions import validation_summary
from core.inserts import insert_parts, unsaved
from core.logging import log_context
from core.prepared import prepared_cursor
from messaging.backoff import attempts_used_up, next_attempt_at
from messaging.models import Direction, Message, MessageStatus
from messaging.rules import content_check
from messaging.signals import ProviderIdAssignment, assignment_lookup, provider_message_ids_assigned
from providers.base import ForcedError, InboundMessage, OutboundMessage, Provider, ProviderError, SendResult
from providers.breaker import breaker_permit, breaker_record_failure, breaker_record_success, breaker_release_probe
from providers.registry import provider_get, provider_names_for_channel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendCommand:
    channel: str
    type: str
    from_address: str
    to_address: str
    body: str
    #: As the client sent it; None means "now", and stays None in the fingerprint so a retry matches.
    timestamp: datetime | None = None
    attachments: list[str] = field(default_factory=list)
    client_message_id: str | None = None
    forced_error: ForcedError | None = None

    @classmethod
    def from_validated(cls, data: Mapping[str, Any], *, client_message_id: str | None) -> SendCommand:
        """The command for a send serializer's ``validated_data`` (the API's and the back office's)."""
        forced = data.get("_forceError")
        return cls(
            channel=data["channel"],
            type=data["type"],
            from_address=data["from_address"],
            to_address=data["to_address"],
            body=data["body"],
            attachments=data["attachments"],
            timestamp=data.get("timestamp"),
            client_message_id=client_message_id,
            forced_error=ForcedError(**forced) if forced else None,
        )

    def fingerprint(self) -> str:
        """Identifies the request's content, for idempotency-key reuse checks: the SHA-256 of the
        command as sorted JSON without ``client_message_id``, which is what ``asdict`` gives (stored
        fingerprints were made that way) without its deep copy of every value."""
        content = {
            name: asdict(value) if isinstance(value, ForcedError) else value
            for name, value in vars(self).items()
            if name != "client_message_id"
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class SendOutcome:
    message: Message
    #: True when an idempotency key matched an earlier request and nothing new was sent.
    replayed: bool = False


#: Metadata key naming (as configured: a registered name or a dotted path) the provider that may have
#: accepted the message although no answer said so (a timeout, a connection lost mid-answer, an
#: unreadable answer). Every later attempt goes to that provider alone, with the same idempotency
#: token: failing over then could send the message twice.
UNCONFIRMED_PROVIDER = "unconfirmed_provider"
#: Metadata key: the ``Provider.key`` that accepted the message (``Message.provider`` is its name).
ACCEPTED_BY = "accepted_by"


def providers_for_channel(channel: str) -> list[Provider]:
    """The channel's providers in failover order (those listing it in default_channels, or MESSAGE_PROVIDERS)."""
    return [provider for _, provider in _provider_chain(channel)]


def _provider_chain(channel: str) -> list[tuple[str, Provider]]:
    return [(name, provider_get(name)) for name in provider_names_for_channel(channel)]


def provider_for_channel(channel: str) -> Provider:
    """The channel's first provider: the one a new message is recorded with until another accepts it."""
    return providers_for_channel(channel)[0]


def message_send(*, command: SendCommand, queue: bool = False) -> SendOutcome:
    """Stores an outbound message and makes the first delivery attempt inline; with ``queue`` it is
    stored ``pending``, due now and unleased, and the outbox delivers it (asynchronous sends)."""
    fingerprint = command.fingerprint()
    try:
        message = _message_create_outbound(command=command, fingerprint=fingerprint, queue=queue)
    except IntegrityError:
        existing = _message_by_client_id(command)
        if existing is None:
            raise
        return _idempotent_replay(existing=existing, fingerprint=fingerprint)
    if queue:
        return SendOutcome(message=message)
    return SendOutcome(message=message_attempt_delivery(message=message))


def _message_by_client_id(command: SendCommand) -> Message | None:
    if command.client_message_id is None:
        return None
    return Message.objects.filter(channel=command.channel, client_message_id=command.client_message_id).first()


def _idempotent_replay(*, existing: Message, fingerprint: str) -> SendOutcome:
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This idempotency key was already used with a different request body.",
            details={"client_message_id": existing.client_message_id, "message_id": existing.pk},
        )
    # The original request may still be making its first provider attempt: wait for its outcome
    # rather than answer with a state that is about to change.
    deadline = time.monotonic() + settings.IDEMPOTENCY_WAIT_SECONDS
    with waiting_outside():  # the original may be a request of this process, waiting for its turn
        while _first_attempt_in_flight(existing) and time.monotonic() < deadline:
            time.sleep(0.05)
            existing.refresh_from_db()
    if _first_attempt_in_flight(existing):
        raise Conflict(
            "A request with this idempotency key is still being processed; retry shortly.",
            code="idempotency_in_progress",
            details={"message_id": existing.pk},
        )
    return SendOutcome(message=existing, replayed=True)


def _first_attempt_in_flight(message: Message) -> bool:
    return message.status == MessageStatus.PENDING and not message.first_outcome


def _message_create_outbound(*, command: SendCommand, fingerprint: str, queue: bool) -> Message:
    provider = provider_for_channel(command.channel)
    metadata = {}
    if command.forced_error is not None:
        metadata["force_error"] = asdict(command.forced_error)
    now = timezone.now()
    timestamp = command.timestamp or now
    if queue:
        # The outbox's to claim at once; the answer (202 pending) is the first outcome, so an
        # idempotent repeat answers 202 too instead of waiting for a delivery.
        delivery: dict[str, object] = {
            "attempts": 0,
            "next_attempt_at": now,
            "leased_until": None,
            "first_outcome": MessageStatus.PENDING,
        }
    else:
        # The inline attempt is the first one, and holds the message until the lease runs out;
        # if this process dies before recording its outcome, the outbox takes the message over then.
        delivery = {
            "attempts": 1,
            "next_attempt_at": now,
            "leased_until": now + timedelta(seconds=settings.PROVIDER_TIMEOUT_SECONDS * 2),
        }
    message = unsaved(
        Message,
        channel=command.channel,
        direction=Direction.OUTBOUND,
        type=command.type,
        from_address=command.from_address,
        to_address=command.to_address,
        body=command.body,
        attachments=command.attachments,
        status=MessageStatus.PENDING,
        provider=provider.name,
        client_message_id=command.client_message_id,
        request_fingerprint=fingerprint,
        timestamp=timestamp,
        metadata=metadata,
        **delivery,
    )
    if connection.vendor == "postgresql":
        with _savepoint_if_nested():  # an idempotency key's IntegrityError must not end a caller's transaction
            return _message_store_in_one_statement(message)
    with transaction.atomic():
        conversation = conversation_get_or_create(
            channel=command.channel, address_1=command.from_address, address_2=command.to_address
        )
        message.conversation = conversation
        message.save(force_insert=True)
        conversation_record_message(
            conversation_id=conversation.pk, timestamp=timestamp, preview=_preview(message), inbound=False
        )
    return message


def _message_store_in_one_statement(message: Message) -> Message:
    """The send's transaction as one statement (PostgreSQL): the conversation upsert with its counters,
    then the message INSERT. A reused idempotency key fails the whole statement (IntegrityError), so
    nothing is counted. Only what the database chose (the ids) is read back: every other column is
    the instance's own value (``insert_parts`` ran the fields' ``pre_save``, which sets the
    timestamps), so ``message`` becomes the stored row without reading it as a new model."""
    sql, params = _insert_with_conversation_sql(message, inbound=False, source="(SELECT 1) AS one_row", message_id=None)
    with prepared_cursor() as cursor:
        cursor.execute(f"WITH {sql} SELECT id, conversation_id FROM stored_message", params)
        message.pk, message.conversation_id = cursor.fetchone()
    message._state.adding = False
    message._state.db = connection.alias
    return message


def _preview(message: Message) -> str:
    return message_preview(
        body=message.body, is_html=CHANNELS[message.channel].html_body, attachment_count=len(message.attachments)
    )


def _outbound_for(message: Message) -> OutboundMessage:
    forced = message.metadata.get("force_error")
    return OutboundMessage(
        channel=message.channel,
        type=message.type,
        from_address=message.from_address,
        to_address=message.to_address,
        body=message.body,
        attachments=list(message.attachments),
        idempotency_token=str(message.provider_token),
        attempt=message.attempts,
        forced_error=ForcedError(**forced) if forced else None,
    )


@dataclass(frozen=True)
class AttemptOutcome:
    """What one delivery attempt's provider calls came to, before anything is recorded: the accepted
    send (``result``, by the provider ``accepted_by``), or the error that ended the attempt and the
    provider that may have accepted the message unseen (``unconfirmed``)."""

    result: SendResult | None = None
    accepted_by: str = ""
    error: ProviderError | None = None
    unconfirmed: str | None = None
    #: No provider was called (every circuit breaker on the chain open): the attempt does not count.
    skipped: bool = False


def message_attempt_delivery(*, message: Message) -> Message:
    """One delivery attempt for a ``pending`` message the caller holds (the inline send, or an outbox
    claim), already counted in ``attempts``: the provider calls, then the outcome recorded. No
    transaction may be open around it. Returns the message as recorded."""
    message_record_attempts(attempts=[(message, message_call_providers(message=message))])
    return message


def message_call_providers(*, message: Message) -> AttemptOutcome:
    """The provider calls of one attempt, with no database access (the outbox runs many at once).

    The channel's providers are tried in order (docs/PROVIDERS.md): one whose circuit breaker is open
    is skipped, and the next is tried only after an error proving the message was not accepted
    (``ProviderError.not_accepted``). Any other error ends the attempt; if it leaves the outcome
    unknown, the message stays with that provider for good (``UNCONFIRMED_PROVIDER``).
    """
    outbound = _outbound_for(message)
    simulated = outbound.forced_error is not None and outbound.forced_error.applies_to(outbound.attempt)
    error: ProviderError | None = None
    called = False
    for configured, provider in _delivery_candidates(message):
        permit = breaker_permit(provider=provider.key)
        if not permit.allowed:
            error = ProviderError(
                provider=provider.key,
                code="circuit_open",
                message=f"{provider.key} is failing; its circuit breaker is {permit.state}.",
                retryable=True,
                retry_after=permit.retry_in,
                not_accepted=True,
            )
            continue
        called = True
        try:
            result = provider.send(outbound)
        except ProviderError as exc:
            error = exc
        except Exception as exc:
            # An adapter bug or an unexpected network error: the message is stored, so schedule a retry
            # rather than answer 500 and tempt the client to send it again.
            logger.exception("Provider %s raised unexpectedly for message %s", provider.key, message.pk)
            error = ProviderError(
                provider=provider.key, code="provider_error", message=type(exc).__name__, retryable=True
            )
        else:
            breaker_record_success(provider=provider.key, permit=permit)
            return AttemptOutcome(result=result, accepted_by=provider.key)
        # A failure the mock was asked for, or this process's own (its connection limit), says nothing
        # about the provider's health.
        if simulated or error.local:
            breaker_release_probe(provider=provider.key, permit=permit)
        elif error.retryable:
            breaker_record_failure(provider=provider.key)
        else:
            breaker_record_success(provider=provider.key, permit=permit)  # it answered: the provider works
        if not (error.retryable and error.not_accepted):
            # Unknown outcome: this provider may have taken it; it alone may send it from now on.
            return AttemptOutcome(error=error, unconfirmed=configured if error.retryable else None)
        logger.info(
            "Message %s: %s did not accept it (%s); trying the next provider", message.pk, provider.key, error.code
        )
    if error is None:  # an empty chain cannot be configured; kept as a retry rather than a crash
        error = ProviderError(provider=message.provider, code="no_provider", message="No provider.", retryable=True)
    return AttemptOutcome(error=error, skipped=not called)


def message_record_attempts(*, attempts: list[tuple[Message, AttemptOutcome]]) -> None:
    """Records the outcomes of attempts made on messages the caller holds, and updates each message in
    memory to match (re-read only when another writer got there first). On PostgreSQL the accepted
    sends are written in one UPDATE; failures, and a batch that hits a stored provider id, one at a
    time. Status callbacks that arrived before a provider id was recorded are then applied."""
    accepted = [(message, outcome) for message, outcome in attempts if outcome.result is not None]
    assigned: list[Message] = []
    looked_up: dict[int, bool] = {}
    if accepted and connection.vendor == "postgresql":
        try:
            with _savepoint_if_nested():
                assigned = _record_successes(accepted, looked_up=looked_up)
        except IntegrityError:
            one_by_one = {message.pk for message, _ in accepted}  # a provider id already stored: which?
        except DATABASE_UNAVAILABLE as exc:
            _log_unrecorded([message for message, _ in accepted], exc)
            one_by_one = set()
        else:
            one_by_one = set()
    else:
        one_by_one = {message.pk for message, _ in accepted}
    for message, outcome in attempts:
        if outcome.result is None:
            assert outcome.error is not None
            # Each failure is logged on its own, naming the message and attempt (a worker records
            # a batch: its successes get one line for the batch).
            with log_context(message_id=message.pk, attempt=message.attempts):
                if outcome.skipped:
                    recorded = _record_skipped(message=message, error=outcome.error)
                else:
                    recorded = _record_failure(message=message, error=outcome.error, unconfirmed=outcome.unconfirmed)
        elif message.pk in one_by_one:
            recorded = _record_success(message=message, result=outcome.result, accepted_by=outcome.accepted_by)
            if recorded and message.status == MessageStatus.SENT:
                assigned.append(message)
        else:
            continue
        if recorded is False:
            _refresh_if_reachable(message)
    if assigned:
        # Committed: status callbacks that arrived before this point are waiting as orphans.
        provider_message_ids_assigned.send(
            sender=Message,
            assignments=[
                ProviderIdAssignment(
                    message_id=message.pk, provider=message.provider, provider_message_id=message.provider_message_id
                )
                for message in assigned
                if message.provider_message_id
            ],
            looked_up=looked_up,
        )


def _savepoint_if_nested():
    """A savepoint only where a failed statement must not end the caller's transaction; in autocommit a
    single statement is its own transaction (no BEGIN/COMMIT round trips)."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def _log_unrecorded(messages: list[Message], exc: Exception) -> None:
    logger.warning(
        "Messages %s: their outcomes could not be recorded (%s); they stay pending and the outbox "
        "reconciles them through their idempotency tokens",
        [message.pk for message in messages],
        str(exc).strip()[:200],
    )


def _success_fields(message: Message, result: SendResult, accepted_by: str) -> dict[str, object]:
    metadata = {**message.metadata, "provider_response": result.response, ACCEPTED_BY: accepted_by}
    metadata.pop(UNCONFIRMED_PROVIDER, None)
    return {
        "status": MessageStatus.SENT,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
        "next_attempt_at": None,
        "leased_until": None,
        "last_error": None,
        "metadata": metadata,
        "updated_at": timezone.now(),
        **_first_outcome(message, MessageStatus.SENT),
    }


def _apply_in_memory(message: Message, fields: Mapping[str, object]) -> None:
    for name, value in fields.items():
        setattr(message, name, value)


def _record_successes(accepted: list[tuple[Message, AttemptOutcome]], *, looked_up: dict[int, bool]) -> list[Message]:
    """The accepted sends of a batch in one UPDATE ... FROM jsonb_to_recordset(the batch as one JSON
    document), with the guard of ``_record_success`` (still ``pending``): one prepared statement
    whatever the batch's size (over one, below), and one parameter to send (text arrays would be
    escaped element by element). Returns the messages it updated.

    The rows are found by primary key (``m.id = ANY(the batch's ids)``), whatever the planner
    guesses of the batch (``jsonb_to_recordset`` is estimated at 100 rows, for which a table of a few
    thousand rows is read whole), and the guard is a join condition on the status each row of the
    batch carries. Written as ``m.status = 'pending'``, it let the planner read every entry of the
    status indexes for 'pending': entries that every send leaves behind (stored pending, then sent)
    until VACUUM, and bitmap scans never mark them dead, so each UPDATE grew slower with the sends
    since the last VACUUM (2.3 ms for one row after 13,000 sends, against 0.1-0.2 ms by key).

    One accepted send (every inline send, and a batch of one) has a statement of its own,
    ``_record_success_by_key_sql``. A prepared statement keeps the generic plan PostgreSQL made on
    the connection's sixth run of it until the next ANALYZE of the table. For the batch statement on
    a table that was new or small then, that plan is a hash join over a sequential scan (the batch is
    estimated at 100 rows): in 6,000 inline sends on a new database, each UPDATE read the whole
    table, 18 M rows in all. Batches of more than one come from the outbox worker, whose connections
    plan each run instead (``core.prepared.custom_plans``).

    One accepted send's UPDATE also returns what the receivers of ``provider_message_ids_assigned``
    would look up for it (``assignment_lookup``: whether status events came before its provider id),
    into ``looked_up`` under the message's id: one statement where there were two."""
    rows: list[dict[str, object]] = []
    fields_of: dict[int, dict[str, object]] = {}
    for message, outcome in accepted:
        assert outcome.result is not None
        fields = _success_fields(message, outcome.result, outcome.accepted_by)
        fields_of[message.pk] = fields
        rows.append(
            {
                "id": message.pk,
                "status": MessageStatus.PENDING,
                "provider": fields["provider"],
                "provider_message_id": fields["provider_message_id"],
                "metadata": fields["metadata"],
            }
        )
    now = timezone.now()
    params: list[Any]
    asynchronous = _outcome_commits_asynchronously(accepted)
    looking: ProviderIdAssignment | None = None
    lookup_sql = ""
    lookup_params: list[Any] = []
    if len(rows) == 1:
        [row] = rows
        [(message, outcome)] = accepted
        lookup = assignment_lookup()
        if lookup is not None and outcome.result is not None and outcome.result.provider_message_id:
            looking = ProviderIdAssignment(
                message_id=message.pk,
                provider=outcome.result.provider,
                provider_message_id=outcome.result.provider_message_id,
            )
            try:
                lookup_sql, lookup_params = lookup(looking)
            except Exception:  # the receivers look after the commit instead, and report what fails
                looking = None
        sql = _record_success_by_key_sql(asynchronous, lookup_sql)
        params = [MessageStatus.SENT, row["provider"], row["provider_message_id"], json.dumps(row["metadata"])]
        params += [now, MessageStatus.SENT, row["id"], MessageStatus.PENDING, *lookup_params]
    else:
        sql = _record_successes_sql(asynchronous)
        params = [json.dumps(rows), MessageStatus.SENT, now, MessageStatus.SENT]
    with prepared_cursor() as cursor:
        try:
            with _savepoint_if_nested():
                cursor.execute(sql, params)
        except ProgrammingError:
            if not lookup_sql:
                raise
            # The lookup's function is missing (this code running ahead of its migration): the
            # outcome is recorded without it, and the receivers look after the commit.
            logger.warning("Message %s: outcome recorded without its lookup", accepted[0][0].pk, exc_info=True)
            looking = None
            cursor.execute(_record_success_by_key_sql(asynchronous), params[: len(params) - len(lookup_params)])
        answered = cursor.fetchall()
    updated = {each[0] for each in answered}
    if looking is not None:  # NULL: the lookup could not answer (its lock was held), and is left out
        looked_up.update((each[0], each[1]) for each in answered if each[1] is not None)
    recorded = []
    for message, _ in accepted:
        if message.pk in updated:
            _apply_in_memory(message, {**fields_of[message.pk], "updated_at": now})
            recorded.append(message)
        else:
            logger.warning("Message %s left pending before its send result was recorded", message.pk)
            _refresh_if_reachable(message)
    return recorded


def _outcome_commits_asynchronously(accepted: list[tuple[Message, AttemptOutcome]]) -> bool:
    """Whether the outcome UPDATE of these accepted sends may commit without waiting for PostgreSQL to
    flush its WAL (``DB_ASYNC_OUTCOME_COMMIT``): only where losing it in a server crash (three
    ``wal_writer_delay`` at most, 600 ms by default) costs no second send and no failed message.

    A lost outcome leaves the message as it was stored before the attempt, ``pending`` under its lease,
    as a database failure between the call and the UPDATE does (``_outcome_left_to_the_outbox``);
    the outbox then attempts it again with the same idempotency token. That is a replay, not a second
    send, only if, for every message:

    - another attempt is left (``MAX_ATTEMPTS``): the outbox fails a message whose attempts are used
      up as ``attempt_lost`` instead of attempting it again; and this attempt still holds its lease
      (by ``_LEASE_MARGIN``), so no later attempt can have taken the message, and its attempts, over;
    - the provider that accepted it is the only one the next attempt may reach (a channel with one
      provider, or a message pinned to it): a failover chain could hand the retry to another
      provider, which would send it again;
    - that provider replays by token (``Provider.replays_by_token``: the mocks; none of the real APIs
      is counted on for it).

    And only as a statement that is its own transaction, so the setting never reaches a caller's
    writes. Any later synchronous commit (an inbound message, a status callback) flushes the WAL up
    to itself, outcomes before it included, so a status applied to a message can never outlive the
    outcome it followed. Everything else waits for its flush."""
    if not settings.DB_ASYNC_OUTCOME_COMMIT or not connection.get_autocommit():
        return False
    leased_past = timezone.now() + _LEASE_MARGIN
    for message, outcome in accepted:
        if message.leased_until is None or message.leased_until <= leased_past:
            return False  # the lease may pass to another attempt, perhaps the last, before this commits
        if attempts_used_up(attempts=message.attempts, attempt_base=message.attempt_base):
            return False
        reachable = [provider for _, provider in _delivery_candidates(message)]  # as stored: the retry's
        if len(reachable) != 1 or reachable[0].key != outcome.accepted_by or not reachable[0].replays_by_token:
            return False
    return True


#: How long an attempt's lease must still run for its outcome to commit asynchronously: far more than
#: the moment between the check and the UPDATE's commit.
_LEASE_MARGIN = timedelta(seconds=1)


#: Joined to an outcome UPDATE that is its own transaction: ``synchronous_commit`` off for that
#: transaction alone (``set_config``'s ``is_local``), in the statement's one round trip.
_ASYNCHRONOUS_COMMIT = f"(SELECT {ASYNCHRONOUS_COMMIT}) AS asynchronous_commit"


@functools.cache
def _record_success_by_key_sql(asynchronous: bool = False, lookup: str = "") -> str:
    """``_record_successes_sql`` for one message, which a generic plan finds by primary key on any table
    over a couple of pages, and on a new one (PostgreSQL takes a table never vacuumed or analyzed for
    ten pages); the batch statement's reads the whole table below about a thousand rows. The guard is
    ``status || '' = 'pending'``, an expression no index covers: written ``status = $n``, a generic
    plan on a new table read the status index for 'pending' with the key as a filter. ``lookup``, a
    boolean expression (``assignment_lookup``), is returned after the id, its parameters last."""
    table = connection.ops.quote_name(Message._meta.db_table)
    assignments = _success_assignments("%s", "%s", "%s::jsonb")
    joined = f" FROM {_ASYNCHRONOUS_COMMIT}" if asynchronous else ""
    returning = f"m.id, {lookup}" if lookup else "m.id"
    return (
        f"UPDATE {table} AS m SET {assignments}{joined} WHERE m.id = %s AND m.status || '' = %s RETURNING {returning}"
    )


@functools.cache
def _record_successes_sql(asynchronous: bool = False) -> str:
    table = connection.ops.quote_name(Message._meta.db_table)
    joined = f", {_ASYNCHRONOUS_COMMIT}" if asynchronous else ""
    return (
        # Every row's status is 'pending': data rather than a literal, so the guard is a join
        # condition and no plan reads the status indexes (see the docstring above).
        "WITH v AS (SELECT id, status, provider, provider_message_id, metadata FROM jsonb_to_recordset(%s::jsonb)"
        " AS v(id bigint, status text, provider text, provider_message_id text, metadata jsonb))"
        f" UPDATE {table} AS m SET {_success_assignments('v.provider', 'v.provider_message_id', 'v.metadata')}"
        f" FROM v{joined} WHERE m.id = ANY(ARRAY(SELECT id FROM v)) AND m.id = v.id AND m.status = v.status"
        " RETURNING m.id"
    )


def _success_assignments(provider: str, provider_message_id: str, metadata: str) -> str:
    """The SET list of an accepted send (``_success_fields``) for both statements, with the expressions
    giving the row's own values; the status, ``updated_at`` and the first outcome are parameters."""
    return (
        f"status = %s, provider = {provider}, provider_message_id = {provider_message_id}, next_attempt_at = NULL,"
        f" leased_until = NULL, last_error = NULL, metadata = {metadata}, updated_at = %s,"
        " first_outcome = CASE WHEN m.first_outcome = '' THEN %s ELSE m.first_outcome END"
    )


def _delivery_candidates(message: Message) -> list[tuple[str, Provider]]:
    unconfirmed = message.metadata.get(UNCONFIRMED_PROVIDER)
    if not unconfirmed:
        return _provider_chain(message.channel)
    # Still configured or not, only that provider may send it (it may have already).
    return [(unconfirmed, provider_get(unconfirmed))]


def _outcome_left_to_the_outbox(record):
    """Recording an attempt's outcome must never turn into an error answer: when the database is
    unavailable at that moment, the message stays ``pending`` under its lease (as stored before the
    provider call) and the send is answered 202. When the lease runs out the outbox attempts it again
    with the same idempotency token, so a send the provider had accepted is recorded, not repeated.
    The wrapped function returns whether its guarded UPDATE applied; the wrapper None when unknown."""

    @functools.wraps(record)
    def wrapper(*, message: Message, **kwargs) -> bool | None:
        try:
            return record(message=message, **kwargs)
        except DATABASE_UNAVAILABLE as exc:
            logger.warning(
                "Message %s attempt %s: its outcome could not be recorded (%s); it stays pending and the "
                "outbox reconciles it through its idempotency token",
                message.pk,
                message.attempts,
                str(exc).strip()[:200],
            )
            return None

    return wrapper


def _refresh_if_reachable(message: Message) -> None:
    # Unreachable: answered as stored before the attempt, pending.
    with contextlib.suppress(*DATABASE_UNAVAILABLE):
        message.refresh_from_db()


@_outcome_left_to_the_outbox
def _record_success(*, message: Message, result: SendResult, accepted_by: str) -> bool | None:
    fields = _success_fields(message, result, accepted_by)
    try:
        with _savepoint_if_nested():
            # Not fenced on ``attempts``: whichever attempt the provider accepted, the message is sent
            # (the idempotency token makes every attempt of one message the same provider message).
            updated = Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(**fields)
    except IntegrityError:
        # Another stored message already has this provider id: never overwrite it or answer a 500.
        conflict = ProviderError(
            provider=result.provider,
            code="provider_id_conflict",
            message=f"The provider answered with id {result.provider_message_id}, already stored.",
            retryable=False,
        )
        return _record_failure(message=message, error=conflict)
    if not updated:
        logger.warning("Message %s left pending before its send result was recorded", message.pk)
        return False
    _apply_in_memory(message, fields)
    return True


def _first_outcome(message: Message, status: str) -> dict[str, str]:
    return {} if message.first_outcome else {"first_outcome": status}


@_outcome_left_to_the_outbox
def _record_failure(*, message: Message, error: ProviderError, unconfirmed: str | None = None) -> bool | None:
    """Records a failed attempt; ``unconfirmed`` names a provider that may have accepted the message
    (every later attempt goes to it alone)."""
    attempts = message.attempts
    pinned = {"metadata": {**message.metadata, UNCONFIRMED_PROVIDER: unconfirmed}} if unconfirmed else {}
    retry = error.retryable and not attempts_used_up(attempts=attempts, attempt_base=message.attempt_base)
    status = MessageStatus.PENDING if retry else MessageStatus.FAILED
    fields = {
        "status": status,
        "next_attempt_at": next_attempt_at(attempts=attempts - message.attempt_base, retry_after=error.retry_after)
        if retry
        else None,
        "leased_until": None,
        "last_error": {"code": error.code, "message": error.message},
        "updated_at": timezone.now(),
        **_first_outcome(message, status),
        **pinned,
    }
    # Fenced on ``attempts``: a sender whose lease ran out and was overtaken (the new claim counted
    # another attempt) records nothing.
    updated = Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING, attempts=attempts).update(**fields)
    logger.info(
        "Message %s attempt %s failed (%s %s); %s",
        message.pk,
        attempts,
        error.code,
        error.message,
        "retry scheduled" if retry else "giving up",
    )
    if not updated:
        logger.warning("Message %s changed before its failed attempt %s was recorded", message.pk, attempts)
        return False
    _apply_in_memory(message, fields)
    return True


@_outcome_left_to_the_outbox
def _record_skipped(*, message: Message, error: ProviderError) -> bool | None:
    """No provider was called (every circuit breaker on the chain is open): the message waits until
    one may be tried again. The attempt does not count towards MAX_ATTEMPTS (``attempt_base`` moves
    with it), and the last real provider error stays the one support sees."""
    attempts = message.attempts
    wait = max(error.retry_after or settings.RETRY_BASE_DELAY_SECONDS, 1.0)
    fields = {
        "attempt_base": message.attempt_base + 1,
        "next_attempt_at": timezone.now() + timedelta(seconds=wait),
        "leased_until": None,
        "last_error": message.last_error or {"code": error.code, "message": error.message},
        "updated_at": timezone.now(),
        **_first_outcome(message, MessageStatus.PENDING),
    }
    # Fenced on ``attempts`` (and so on the attempt_base this claim read), like _record_failure.
    updated = Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING, attempts=attempts).update(**fields)
    logger.info("Message %s attempt %s not made (%s); waiting %.0f s", message.pk, attempts, error.code, wait)
    if not updated:
        logger.warning("Message %s changed before its skipped attempt %s was recorded", message.pk, attempts)
        return False
    _apply_in_memory(message, fields)
    return True


#: Which statuses a status callback may move a message from: only forward
#: (pending < sent < delivered < read), and never out of ``read`` or ``failed``.
_STATUS_MOVES_FROM: dict[str, list[str]] = {
    MessageStatus.SENT: [MessageStatus.PENDING],
    MessageStatus.DELIVERED: [MessageStatus.PENDING, MessageStatus.SENT],
    MessageStatus.READ: [MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.DELIVERED],
    MessageStatus.FAILED: [MessageStatus.PENDING, MessageStatus.SENT],
}


def message_apply_status(*, message_id: int, status: str, error: dict | None = None) -> str:
    """Moves an outbound message forward to ``status`` (sent, delivered, read or failed) if that is forward.

    Returns a note for the event's record: what changed, or why nothing did.
    """
    fields: dict[str, object] = {
        "status": status,
        "next_attempt_at": None,
        "leased_until": None,
        "updated_at": timezone.now(),
    }
    if status == MessageStatus.FAILED:
        fields["last_error"] = error
    updated = Message.objects.filter(pk=message_id, status__in=_STATUS_MOVES_FROM[status]).update(**fields)
    current = Message.objects.filter(pk=message_id).values_list("status", flat=True).first()
    if updated:
        return f"status -> {status}"
    return f"kept: already {current}"


def message_apply_statuses(*, changes: list[tuple[int, str, dict | None]]) -> list[str]:
    """``message_apply_status`` for many events at once, in the caller's transaction: the messages are
    locked in id order, each ``(message id, status, error)`` is applied in turn with the same
    forward-only rules, and every changed message is written once. Returns one note per change, in
    order.

    The lock is ``FOR NO KEY UPDATE``, the one the status UPDATE takes anyway: it leaves the key share
    that storing a row which names a message takes (a webhook event's foreign key) free. ``FOR UPDATE``
    blocked it, so a batch holding one message and waiting for the next, and another holding that next
    one and storing an event naming the first (an event that changes nothing), waited for each other
    until PostgreSQL's deadlock check aborted one."""
    locked = (
        Message.objects.select_for_update(no_key=True)
        .filter(pk__in={message_id for message_id, _, _ in changes})
        .order_by("pk")
    )
    current: dict[int, str] = dict(locked.values_list("pk", "status"))
    errors: dict[int, dict | None] = {}
    changed: set[int] = set()
    notes = []
    for message_id, status, error in changes:
        if current[message_id] in _STATUS_MOVES_FROM[status]:
            current[message_id] = status
            changed.add(message_id)
            if status == MessageStatus.FAILED:
                errors[message_id] = error
            notes.append(f"status -> {status}")
        else:
            notes.append(f"kept: already {current[message_id]}")
    now = timezone.now()
    by_status: dict[str, list[int]] = {}
    for message_id in changed:
        by_status.setdefault(current[message_id], []).append(message_id)
    for status, message_ids in by_status.items():
        fields: dict[str, object] = {"status": status, "next_attempt_at": None, "leased_until": None, "updated_at": now}
        if status != MessageStatus.FAILED:
            Message.objects.filter(pk__in=message_ids).update(**fields)
            continue
        for message_id in message_ids:  # each keeps its own provider error
            Message.objects.filter(pk=message_id).update(**fields, last_error=errors[message_id])
    return notes


def message_requeue(*, message_ids: list[int]) -> list[int]:
    """Puts failed outbound messages back in the outbox, due now, with MAX_ATTEMPTS more attempts.

    A message the provider had accepted (it failed later, at the carrier or the mailbox) is a new
    send: it gets a new idempotency token and drops the old provider id, which stays in its metadata.
    A message the provider never confirmed keeps its token, so a send that did go through unseen is
    not repeated. Returns the ids re-queued.
    """
    requeued = []
    candidates = Message.objects.filter(
        pk__in=message_ids, direction=Direction.OUTBOUND, status=MessageStatus.FAILED
    ).only("pk", "attempts", "provider_message_id", "metadata")
    for message in candidates:
        fields = {
            "status": MessageStatus.PENDING,
            "attempt_base": message.attempts,
            "next_attempt_at": timezone.now(),
            "leased_until": None,
            "updated_at": timezone.now(),
        }
        if message.provider_message_id:
            previous = [*message.metadata.get("previous_provider_message_ids", []), message.provider_message_id]
            fields |= {
                "provider_token": uuid.uuid4(),
                "provider_message_id": None,
                "metadata": {**message.metadata, "previous_provider_message_ids": previous},
            }
        if Message.objects.filter(pk=message.pk, status=MessageStatus.FAILED).update(**fields):
            requeued.append(message.pk)
    logger.info("Re-queued %s failed message(s): %s", len(requeued), requeued)
    return requeued


def message_make_due(*, message_ids: list[int]) -> int:
    """Pending outbound messages become due now instead of at their backoff time. A message a sender
    holds keeps its lease: it is claimed again only if that sender never records an outcome."""
    return Message.objects.filter(
        pk__in=message_ids, direction=Direction.OUTBOUND, status=MessageStatus.PENDING
    ).update(next_attempt_at=timezone.now(), updated_at=timezone.now())


def inbound_validate(*, inbound: InboundMessage) -> InboundMessage:
    """The provider's message with the channel's rules applied (messaging/rules.py): the type, the
    addresses normalised, the body checked; the arrival time when the payload gave none.
    ``ValidationFailed`` (400) names each problem."""
    spec = CHANNELS[inbound.channel]
    content, errors = content_check(
        spec=spec,
        requested_type=inbound.type,
        raw_from=inbound.from_address,
        raw_to=inbound.to_address,
        body=inbound.body,
        attachments=inbound.attachments,
    )
    if content is None:
        raise ValidationFailed(validation_summary(errors), details=errors)
    return replace(
        inbound,
        type=content.type,
        from_address=content.from_address,
        to_address=content.to_address,
        timestamp=inbound.timestamp or timezone.now(),
    )


def _inbound_fields(inbound: InboundMessage) -> dict[str, Any]:
    return {
        "channel": inbound.channel,
        "direction": Direction.INBOUND,
        "type": inbound.type or CHANNELS[inbound.channel].message_types[0],
        "from_address": inbound.from_address,
        "to_address": inbound.to_address,
        "body": inbound.body,
        "attachments": inbound.attachments,
        "status": MessageStatus.RECEIVED,
        "provider": inbound.provider,
        "provider_message_id": inbound.provider_message_id,
        "timestamp": inbound.timestamp or timezone.now(),
    }


def _inbound_message(inbound: InboundMessage, **fields: Any) -> Message:
    return Message(**_inbound_fields(inbound), **fields)


def message_receive(*, inbound: InboundMessage) -> Message:
    """Stores a received message (validated by ``inbound_validate``) and counts it unread. Runs inside
    the caller's transaction, so the webhook event, the message and the summary commit together or not
    at all."""
    conversation = conversation_get_or_create(
        channel=inbound.channel, address_1=inbound.from_address, address_2=inbound.to_address
    )
    message = _inbound_message(inbound, conversation=conversation)
    message.save(force_insert=True)
    conversation_record_message(
        conversation_id=conversation.pk, timestamp=message.timestamp, preview=_preview(message), inbound=True
    )
    return message


def message_receive_sql(*, inbound: InboundMessage, source: str, message_id: str) -> tuple[str, list[Any]]:
    """``message_receive`` as two CTEs of one ``WITH`` (PostgreSQL), written only if the relation
    ``source`` has a row: ``stored_conversation``, the conversation upsert that counts the message,
    and ``stored_message``, the message's INSERT with the id ``message_id`` (an SQL expression over
    ``source``). Returns the CTEs' text, comma-joined, and their parameters."""
    message = unsaved(Message, **_inbound_fields(inbound))
    return _insert_with_conversation_sql(message, inbound=True, source=source, message_id=message_id)


def _insert_with_conversation_sql(
    message: Message, *, inbound: bool, source: str, message_id: str | None
) -> tuple[str, list[Any]]:
    conversation_sql, conversation_params = conversation_upsert_counting_sql(
        channel=message.channel,
        address_1=message.from_address,
        address_2=message.to_address,
        timestamp=message.timestamp,
        preview=_preview(message),
        inbound=inbound,
        source=source,
    )
    columns, placeholders, params = insert_parts(message, exclude=frozenset({"conversation_id"}))
    sql = _insert_with_conversation_text(conversation_sql, tuple(columns), tuple(placeholders), source, message_id)
    return sql, [*conversation_params, *params]


@functools.cache
def _insert_with_conversation_text(
    conversation_sql: str, columns: tuple[str, ...], placeholders: tuple[str, ...], source: str, message_id: str | None
) -> str:
    """The text of ``_insert_with_conversation_sql``: the same few shapes on every request."""
    table = connection.ops.quote_name(Message._meta.db_table)
    id_column, id_value = ("id, ", f"{message_id}, ") if message_id else ("", "")
    message_sql = (
        f"INSERT INTO {table} ({id_column}conversation_id, {', '.join(columns)})"
        f" SELECT {id_value}stored_conversation.id, {', '.join(placeholders)}"
        f" FROM stored_conversation, {source} RETURNING *"
    )
    return f"stored_conversation AS ({conversation_sql}), stored_message AS ({message_sql})"
