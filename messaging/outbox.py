"""The outbox: claiming due ``pending`` messages and delivering them, from any number of workers.

A claim is a lease. In one short transaction the worker locks due, unleased rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` (rows another worker is claiming are skipped, not waited for),
sets their ``leased_until`` to now + ``OUTBOX_LEASE_SECONDS`` so no other worker claims them, and
counts the attempt it is about to make in ``attempts``. The provider is then called with no
transaction open, and the outcome ends the lease (``sent``, ``failed``, or ``pending`` with the next
backoff time). A worker that dies mid-send leaves its leases to run out; the messages are then taken
over by another worker with the same provider idempotency token, so a send the provider had already
accepted is not repeated, and the lost attempt still counts towards ``MAX_ATTEMPTS``.

Throughput (docs/PERFORMANCE.md): the main thread claims (one statement per batch) and records (one
UPDATE for a batch's accepted sends, one orphan lookup); the delivery threads only call providers. Per
message a call costs the provider's round trip plus, in mock mode, one Redis round trip (the mock's
script remembering the token and counting the send): the circuit breaker's clean reads are trusted for
a moment per process (providers/breaker.py), and the process's threads share its Redis connections
(core/redis_cache.py; the scripts run on lean connections of their own). A few delivery threads
serve a provider that answers at once; a thread per call in flight serves one that makes each call
wait; and a provider that queues the calls, so that the slowest come near the timeout, is given fewer
at once (``_DeliveryPool``).

Logging: one INFO line per recorded batch (its outcomes and slowest call), one per failed or skipped
attempt (from the services, with the message id and attempt); the line per attempt is at DEBUG.

On SQLite (development) there is no SKIP LOCKED; transactions there take the write lock when they
begin, so claims are still exclusive, but one worker is the supported set-up.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from core.logging import log_context
from core.metrics import record_attempt
from core.prepared import custom_plans, model_columns, prepared_models
from messaging.backoff import attempts_used_up
from messaging.models import Direction, Message, MessageStatus
from messaging.services import (
    AttemptOutcome,
    message_attempt_delivery,
    message_call_providers,
    message_make_due,
    message_record_attempts,
    message_requeue,
)

logger = logging.getLogger(__name__)

_DATABASE_RETRY_SECONDS = 5.0
#: How a delivery pool finds the threads its provider needs (``_DeliveryPool``): while calls wait for
#: a thread, it doubles its threads as long as each doubling raises the calls finished per second by
#: ``_GAIN`` or more, each count measured over ``_TRIAL_SECONDS`` and ``_TRIAL_CALLS`` at least; and it
#: starts a thread per call in flight at once when every thread has been in its call for
#: ``_STUCK_SECONDS`` (a provider that slow needs them all, and gives no rate to measure in time).
_GAIN = 1.3
_TRIAL_SECONDS = 0.2
_TRIAL_CALLS = 32
_STUCK_SECONDS = 0.05
#: How many calls a pool gives its provider at once, its window (``_DeliveryPool``): all it holds to
#: start with. When the calls' mean duration (each finished call weighing ``_LATENCY_WEIGHT``) passes
#: ``_SLOW_SHARE`` of ``PROVIDER_TIMEOUT_SECONDS``, the provider is queueing them: the window is
#: halved, not below ``_LEAST_WINDOW``, at most once per mean call. It grows again by one a call while
#: the mean is under half of that share, by one per window's worth of calls between half and the share.
_LEAST_WINDOW = 8
_SLOW_SHARE = 0.25
_LATENCY_WEIGHT = 1 / 16
#: Seconds between two warnings of a cut (the cuts between are logged at DEBUG).
_SAY_EVERY_SECONDS = 60.0


def _pending():
    return Message.objects.filter(direction=Direction.OUTBOUND, status=MessageStatus.PENDING)


def _claimable(now: datetime):
    return _pending().filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now), next_attempt_at__lte=now)


def outbox_claim(*, limit: int, message_ids: list[int] | None = None) -> list[Message]:
    """Leases up to ``limit`` due messages to the caller, oldest due first, counting the attempt the
    caller is about to make. A message whose attempts are already used up (the last one was lost:
    its sender died, or recording its outcome kept failing) is failed instead of tried again.

    On PostgreSQL this is one statement (lock with SKIP LOCKED, lease, and read back the rows); elsewhere
    a short transaction of three."""
    if limit <= 0:
        return []
    now = timezone.now()
    if connection.vendor == "postgresql":
        leased = _claim_in_one_statement(now=now, limit=limit, message_ids=message_ids)
        lost = [message.pk for message in leased if message.status == MessageStatus.FAILED]
        if lost:
            logger.warning("Failed message(s) %s: their last attempt never recorded an outcome", lost)
        return sorted((message for message in leased if message.status == MessageStatus.PENDING), key=lambda m: m.pk)
    with transaction.atomic():
        due = _claimable(now).select_for_update(skip_locked=True)
        if message_ids is not None:
            due = due.filter(pk__in=message_ids)
        rows = list(due.order_by("next_attempt_at", "id").values_list("pk", "attempts", "attempt_base")[:limit])
        exhausted = [pk for pk, attempts, base in rows if attempts_used_up(attempts=attempts, attempt_base=base)]
        claimed = [pk for pk, attempts, base in rows if not attempts_used_up(attempts=attempts, attempt_base=base)]
        if exhausted:
            Message.objects.filter(pk__in=exhausted).update(
                status=MessageStatus.FAILED,
                next_attempt_at=None,
                leased_until=None,
                last_error=_ATTEMPT_LOST,
                updated_at=now,
            )
            logger.warning("Failed message(s) %s: their last attempt never recorded an outcome", exhausted)
        if claimed:
            Message.objects.filter(pk__in=claimed).update(
                attempts=F("attempts") + 1,
                leased_until=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
                updated_at=now,
            )
    return list(Message.objects.filter(pk__in=claimed).order_by("id")) if claimed else []


_ATTEMPT_LOST = {"code": "attempt_lost", "message": "The last attempt never recorded an outcome."}


def _claim_in_one_statement(*, now: datetime, limit: int, message_ids: list[int] | None) -> list[Message]:
    """The claim as one UPDATE ... RETURNING over a SKIP LOCKED sub-select: the same rows, locks and
    writes as the three-statement transaction, in one round trip. Exhausted rows come back ``failed``.

    The batch is read in index order (``message_outbox_claim_idx``, no sort of every due row) and its
    rows are updated by primary key (``= ANY(ARRAY(...))``: a join against the sub-select can be
    planned as a scan of the whole table). The direction and status are written into the text, so
    that a generic plan of the prepared statement can use that partial index too."""
    maximum = settings.MAX_ATTEMPTS
    params: list[Any] = [now, now]
    if message_ids is not None:
        params.append(list(message_ids))
    params += [
        limit,
        maximum,
        MessageStatus.FAILED,
        maximum,
        maximum,
        maximum,
        now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
        maximum,
        json.dumps(_ATTEMPT_LOST),
        now,
    ]
    return prepared_models(Message, _claim_sql(only_ids=message_ids is not None), params)


@functools.cache
def _claim_sql(*, only_ids: bool) -> str:
    table = Message._meta.db_table
    used_up = "m.attempts - m.attempt_base >= %s"  # backoff.attempts_used_up, in SQL
    return f"""
        WITH due AS (
            SELECT id FROM {table}
            WHERE direction = '{Direction.OUTBOUND}' AND status = '{MessageStatus.PENDING}' AND next_attempt_at <= %s
              AND (leased_until IS NULL OR leased_until <= %s){" AND id = ANY(%s)" if only_ids else ""}
            ORDER BY next_attempt_at, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {table} AS m SET
            status = CASE WHEN {used_up} THEN %s ELSE m.status END,
            attempts = CASE WHEN {used_up} THEN m.attempts ELSE m.attempts + 1 END,
            next_attempt_at = CASE WHEN {used_up} THEN NULL ELSE m.next_attempt_at END,
            leased_until = CASE WHEN {used_up} THEN NULL ELSE %s END,
            last_error = CASE WHEN {used_up} THEN %s::jsonb ELSE m.last_error END,
            updated_at = %s
        WHERE m.id = ANY(ARRAY(SELECT id FROM due))
        RETURNING {model_columns(Message)}
    """


def outbox_next_due_at() -> datetime | None:
    """When the earliest pending message can next be claimed: its due time, or its lease's end."""
    return (
        _pending()
        .annotate(claimable_at=Greatest("next_attempt_at", Coalesce("leased_until", "next_attempt_at")))
        .order_by("claimable_at")
        .values_list("claimable_at", flat=True)
        .first()
    )


@dataclass
class WorkerReport:
    attempted: int = 0
    outcomes: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        counts = ", ".join(f"{count} {status}" for status, count in sorted(self.outcomes.items()))
        return f"{self.attempted} attempted" + (f" ({counts})" if counts else "")


class OutboxWorker:
    """Claims due messages in batches while its delivery pool has room, makes the provider calls on a
    thread pool (up to ``concurrency`` calls in flight, fewer while the provider queues them; the
    threads never touch the database), and records the outcomes from the main thread in batches
    (accepted sends in one UPDATE). The pool starts with ``first_threads`` threads and adds more while
    more finish the calls faster (``_DeliveryPool``).

    ``once``: stop when nothing is due now or within ``due_within`` seconds of the start, instead of
    polling forever. ``stop()`` (SIGTERM) stops claiming; deliveries in flight finish and are recorded.
    """

    def __init__(
        self,
        *,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        once: bool = False,
        due_within: float = 0.0,
        batch_size: int = 100,
        first_threads: int | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.first_threads = min(concurrency, settings.WORKER_FIRST_THREADS if first_threads is None else first_threads)
        self.poll_interval = poll_interval
        self.once = once
        self.due_within = due_within
        self.batch_size = max(1, batch_size)
        self.report = WorkerReport()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _claim_threshold(self, pool: _DeliveryPool) -> int:
        # Claim once a quarter of the pool's capacity (or of a batch) is free, not for every call that
        # ends: one statement leases many rows.
        return max(1, min(self.batch_size, pool.capacity) // 4)

    def run(self) -> WorkerReport:
        horizon = timezone.now() + timedelta(seconds=self.due_within)
        pool = _DeliveryPool(size=self.concurrency, call=self._call, first_threads=self.first_threads)
        with custom_plans(), pool:
            try:
                while not self.stopping:
                    _recycle_connection()
                    wanted = min(pool.room, self.batch_size)
                    if pool.in_flight and wanted < self._claim_threshold(pool):
                        wanted = 0
                    try:
                        claimed = outbox_claim(limit=wanted) if wanted else []
                    except DatabaseError:
                        if self.once:
                            raise
                        # The database restarting must not end a long-running worker: wait, try again.
                        logger.exception("Outbox claim failed; retrying in %ss", _DATABASE_RETRY_SECONDS)
                        connection.close()
                        self._stopping.wait(_DATABASE_RETRY_SECONDS)
                        continue
                    for message in claimed:
                        pool.submit(message)
                    if wanted and len(claimed) < wanted:
                        # Everything due now is taken.
                        if self.once and not pool.in_flight and not self._due_before(horizon):
                            break
                        timeout = self._until_next_due()
                    elif wanted and pool.room >= self._claim_threshold(pool):
                        timeout = 0.0  # a full batch and slots still free: claim again at once
                    else:
                        timeout = self.poll_interval  # slots busy: claim again when some free up
                    if pool.in_flight:
                        self._record(pool.finished(timeout=timeout))
                    else:
                        self._stopping.wait(timeout)
            finally:
                if pool.in_flight:
                    logger.info("Outbox worker stopping: finishing %s delivery(ies) in flight", pool.in_flight)
                    pool.hand_over_everything()
                    while pool.in_flight:
                        self._record(pool.finished(timeout=None))
        _recycle_connection()
        return self.report

    def _due_before(self, horizon: datetime) -> bool:
        due_at = outbox_next_due_at()
        return due_at is not None and due_at <= horizon

    def _until_next_due(self) -> float:
        try:
            due_at = outbox_next_due_at()
        except DatabaseError:
            if self.once:
                raise
            # The database went away between the claim and this read: poll again soon; the next
            # claim meets the outage and waits it out (a long-running worker never ends on it).
            logger.warning("Outbox: could not read when the next message is due; polling again", exc_info=True)
            return self.poll_interval
        if due_at is None:
            return self.poll_interval
        return max(0.01, min(self.poll_interval, (due_at - timezone.now()).total_seconds()))

    @staticmethod
    def _call(message: Message) -> _Finished:
        """On a pool thread: the provider calls of one attempt (no database work)."""
        started = time.monotonic()
        # Every line logged during this attempt names the message and the attempt.
        with log_context(message_id=message.pk, attempt=message.attempts):
            try:
                return message, message_call_providers(message=message), started
            except Exception:
                logger.exception(
                    "Outbox delivery of message %s failed; it stays leased until it is retried", message.pk
                )
                return message, None, started

    def _record(self, finished: list[_Finished]) -> None:
        """On the main thread: the outcomes of finished calls, in one batch."""
        attempts: list[tuple[Message, AttemptOutcome]] = []
        started_at: dict[int, float] = {}
        failed_calls: list[Message] = []
        for message, outcome, started in finished:
            if outcome is None:
                failed_calls.append(message)
                continue
            attempts.append((message, outcome))
            started_at[message.pk] = started
        try:
            message_record_attempts(attempts=attempts)
        except Exception:
            # A database error while recording: the leases run out and the messages are tried again.
            logger.exception(
                "Recording the outcomes of message(s) %s failed; they stay leased until they are retried",
                [message.pk for message, _ in attempts],
            )
            failed_calls += [message for message, _ in attempts]
            attempts = []
        now = time.monotonic()
        each = logger.isEnabledFor(logging.DEBUG)
        outcomes: Counter = Counter()
        slowest = 0.0
        for message, _ in attempts:
            seconds = now - started_at[message.pk]
            slowest = max(slowest, seconds)
            if each:
                with log_context(message_id=message.pk, attempt=message.attempts):
                    logger.debug(
                        "Message %s attempt %s: %s in %.0f ms",
                        message.pk,
                        message.attempts,
                        message.status,
                        seconds * 1000,
                    )
            outcomes[str(message.status)] += 1
            self._count(message, str(message.status), seconds)
        for message in failed_calls:
            self._count(message, "error", 0.0)
        if attempts:
            # One line per batch at INFO (failures and retries are logged one by one as they are
            # recorded); one line per attempt at DEBUG.
            logger.info(
                "Recorded %s attempt(s): %s; slowest %.0f ms",
                len(attempts),
                ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items())),
                slowest * 1000,
            )

    def _count(self, message: Message, outcome: str, seconds: float) -> None:
        record_attempt(
            channel=message.channel, provider=message.provider, outcome=outcome, source="outbox", seconds=seconds
        )
        self.report.attempted += 1
        self.report.outcomes[outcome] += 1


def _recycle_connection() -> None:
    """Drops a broken or expired connection between rounds, as Django does between requests.
    Not inside a transaction (a test's): there it would close the connection under the caller."""
    if not connection.in_atomic_block:
        close_old_connections()


#: A finished call: the message, its outcome (None when the call raised), when it started.
_Finished = tuple[Message, AttemptOutcome | None, float]


class _DeliveryPool:
    """Runs ``call`` on up to ``size`` threads, fed and drained through two C queues: no future, lock
    or condition per call, and the main thread takes everything that finished in one go. ``size`` 1
    (``--concurrency 1``) calls on the caller's thread and connection. Only the main thread submits and
    collects (``in_flight`` is its count).

    Threads are started as the calls in flight need them, but at first no more than ``first_threads``:
    a call that only waits a moment for its provider frees its thread at once, and every thread more
    in play costs CPU (each call hands the interpreter's lock over at each socket call, and more
    threads wait for it) without adding throughput. While calls wait for a thread, the pool measures
    how many calls a second its threads finish, doubles them, and measures again: it keeps doubling
    while that raises the rate by ``_GAIN``, and stops for good at the first doubling that does not
    (the calls then wait for this process's CPU, not for the provider). When every thread has been in
    its call for ``stuck_after`` seconds, the provider is slow: the pool starts a thread for each call
    in flight at once, up to ``size``, as calls that block for a provider's round trip need.

    How many calls the provider gets at once is the pool's window, which follows their latency as
    TCP's congestion window follows lost packets. It starts at ``size`` (a window that started small
    and doubled each round trip cost the drains about a fifth at 100-500 ms: docs/PERFORMANCE.md), and is
    halved when the calls' mean duration passes ``slow_after`` seconds (a quarter of
    ``PROVIDER_TIMEOUT_SECONDS``): a provider that makes calls wait longer the more it is given is
    queueing them, and more calls only bring its slowest ones to the timeout, whose retry would send
    the message twice where the provider does not replay by token. While calls wait for it, it grows
    by one a call while the mean is under half of ``slow_after`` (the queue is gone: a passing slow
    spell must not cost the rest of the run), by one per window's worth of calls between half and
    ``slow_after`` (about one a round trip), not at all above. The pool holds up to twice its window
    (``capacity``), so after a cut a leased message waits about a call's time for its turn, a few
    across successive cuts, and never longer than ``max_wait`` (its lease less two provider
    timeouts): then it is handed over whatever the window. One window serves every provider of the
    worker."""

    def __init__(
        self,
        *,
        size: int,
        call: Callable[[Message], _Finished],
        first_threads: int,
        stuck_after: float | None = None,
        slow_after: float | None = None,
        max_wait: float | None = None,
    ) -> None:
        self._size = size
        self._call = call
        self._todo: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Finished, float]] = queue.SimpleQueue()  # and the call's seconds
        self._backlog: deque[tuple[Message, float]] = deque()  # taken (and when), waiting for the window
        # A message taken this long ago is handed over whatever the window: its call must still fit in
        # its lease, and may run to a timeout or two (a failover's second provider).
        self._max_wait = (
            max(0.0, settings.OUTBOX_LEASE_SECONDS - 2 * settings.PROVIDER_TIMEOUT_SECONDS)
            if max_wait is None
            else max_wait
        )
        self._handed = 0  # given to the threads (waiting for one, or in a call), not collected yet
        self._window = float(size)
        self._least_window = float(min(size, _LEAST_WINDOW))
        self._cut_at = float("-inf")
        self._slow_after = settings.PROVIDER_TIMEOUT_SECONDS * _SLOW_SHARE if slow_after is None else slow_after
        self._mean_seconds: float | None = None
        self._said_at = float("-inf")
        self._threads: list[threading.Thread] = []
        self._thread_limit = size  # lowered to the threads running if the process cannot start more
        self._grow_to = max(1, min(size, first_threads))  # the threads the calls may have now
        self._stuck_after = _STUCK_SECONDS if stuck_after is None else stuck_after
        self._busy_since: list[float] = []  # per thread: when its call in progress began; 0.0 when idle
        self._climbing = True  # still measuring whether more threads finish more calls
        self._trial: tuple[float, int] | None = None  # (when, calls collected then) for this thread count
        self._rate = 0.0  # calls finished per second with the thread count before this one
        self._collected = 0
        self.in_flight = 0

    def __enter__(self) -> _DeliveryPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()

    @property
    def capacity(self) -> int:
        """How many calls the pool holds at most now (in flight, and waiting for the window)."""
        return min(self._size, 2 * int(self._window))

    @property
    def room(self) -> int:
        """How many more calls the pool takes now."""
        return max(0, self.capacity - self.in_flight)

    def submit(self, message: Message) -> None:
        if self._size == 1:
            self._done.put((self._run(message), 0.0))  # no window to follow: its duration goes unused
        else:
            self._backlog.append((message, time.monotonic()))
            self._hand_over()
        self.in_flight += 1  # counted once it is sure to be collected

    def _hand_over(self, *, everything: bool = False) -> None:
        """Gives the threads the calls waiting for the window while it has room, and those that have
        waited ``max_wait`` whatever the window (all of them with ``everything``: a worker stopping)."""
        now = time.monotonic()
        while self._backlog:
            message, taken_at = self._backlog[0]
            if self._handed >= self._window and not everything and now - taken_at < self._max_wait:
                break
            self._backlog.popleft()
            if len(self._threads) < min(self._grow_to, self._handed + 1):
                self._start_thread()
            self._todo.put(message)
            self._handed += 1

    def hand_over_everything(self) -> None:
        """The calls still waiting for the window go to the threads now (a worker stopping finishes
        what it has taken, as fast as its threads allow)."""
        self._hand_over(everything=True)

    def _until_overdue(self) -> float | None:
        """Seconds before the oldest call waiting for the window is handed over whatever the window."""
        if not self._backlog:
            return None
        return max(0.01, self._backlog[0][1] + self._max_wait - time.monotonic())

    def finished(self, *, timeout: float | None) -> list[_Finished]:
        """The calls finished so far, waiting up to ``timeout`` seconds (None: for ever) for the first.
        While calls wait for a thread, it looks each time (and at least every ``stuck_after`` seconds)
        whether they wait behind slow calls, and starts threads for them if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._may_grow():
                wait = self._stuck_after if wait is None else min(wait, self._stuck_after)
            overdue = self._until_overdue()
            if overdue is not None:
                wait = overdue if wait is None else min(wait, overdue)
            try:
                done = [self._done.get(timeout=wait)]
            except queue.Empty:
                self._hand_over()
                self._adapt()
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                continue
            break
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(done)
        if self._size > 1:
            self._handed -= len(done)
            self._follow_latency([seconds for _, seconds in done])
            self._hand_over()
        self._collected += len(done)
        self._adapt()
        return [finished for finished, _ in done]

    def _follow_latency(self, durations: list[float]) -> None:
        """On the main thread: the window after these calls (their seconds each)."""
        mean = durations[0] if self._mean_seconds is None else self._mean_seconds  # the first call, as it came
        for seconds in durations:
            mean += (seconds - mean) * _LATENCY_WEIGHT
        self._mean_seconds = mean
        if mean > self._slow_after:
            now = time.monotonic()
            # Once per mean call: the calls in flight at a cut come back as slow as they started.
            if now - self._cut_at >= mean and self._window > self._least_window:
                at_provider = min(self._window, self._handed + len(durations), len(self._threads))
                window = max(self._least_window, at_provider / 2)
                said = now - self._said_at >= _SAY_EVERY_SECONDS  # a provider that stays busy: once a minute
                logger.log(
                    logging.WARNING if said else logging.DEBUG,
                    "Outbox: provider calls take %.0f ms on average, over %.0f ms: the provider is queueing "
                    "them; %d calls at once from now, not %d",
                    mean * 1000,
                    self._slow_after * 1000,
                    window,
                    self._window,
                )
                if said:
                    self._said_at = now
                self._window, self._cut_at = window, now
            return
        if self._backlog and self._window < self._size:  # grows only while it holds calls back
            # By one a call (doubling each round trip) while the calls take under half the slow mean;
            # nearer it, by one a window's worth of calls.
            step = len(durations) if mean < self._slow_after / 2 else len(durations) / self._window
            self._window = min(float(self._size), self._window + step)

    def _adapt(self) -> None:
        """On the main thread: more threads when the calls waiting for one wait on the provider."""
        if not self._may_grow():
            return
        now = time.monotonic()
        if self._todo.qsize() == 0:
            # No call waits: the rate now says how fast calls come, not how fast threads finish them.
            self._trial = None
            return
        started_before = now - self._stuck_after
        if self._busy_since and all(0.0 < since <= started_before for since in self._busy_since):
            logger.info(
                "Outbox: every one of %s delivery threads has been in its call for over %.0f ms; "
                "starting a thread per call in flight, up to %s",
                len(self._threads),
                self._stuck_after * 1000,
                self._size,
            )
            self._climbing = False
            self._grow(self._size)
            return
        if not self._climbing:
            return
        if self._trial is None:
            self._trial = (now, self._collected)
            return
        since, collected = self._trial
        calls = self._collected - collected
        if now - since < _TRIAL_SECONDS or calls < _TRIAL_CALLS:
            return
        rate = calls / (now - since)
        self._trial = None
        if rate >= self._rate * _GAIN:
            self._rate = rate
            self._grow(min(self._size, self._grow_to * 2))
        else:
            self._climbing = False
            logger.info(
                "Outbox: %s delivery threads finish %.0f calls/s, %s finished %.0f/s; staying at %s",
                self._grow_to,
                rate,
                self._grow_to // 2,
                self._rate,
                self._grow_to,
            )

    def _may_grow(self) -> bool:
        return self._grow_to < self._size and len(self._threads) < self._thread_limit

    def _grow(self, threads: int) -> None:
        self._grow_to = threads
        for _ in range(min(self._todo.qsize(), threads - len(self._threads))):
            if not self._start_thread():
                break

    def _start_thread(self) -> bool:
        if len(self._threads) >= self._thread_limit:
            return False
        index = len(self._threads)
        thread = threading.Thread(target=self._work, args=(index,), name=f"outbox_{index}", daemon=True)
        self._busy_since.append(0.0)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": the threads already running serve it
            self._busy_since.pop()
            if not self._threads:
                raise
            self._thread_limit = len(self._threads)  # said once, not tried again on every call
            logger.warning(
                "Outbox: could not start delivery thread %s; delivering on the %s running",
                len(self._threads) + 1,
                len(self._threads),
                exc_info=True,
            )
            return False
        self._threads.append(thread)
        return True

    def _work(self, index: int) -> None:
        busy_since = self._busy_since
        while (message := self._todo.get()) is not None:
            busy_since[index] = started = time.monotonic()
            finished = self._run(message)
            busy_since[index] = 0.0
            self._done.put((finished, time.monotonic() - started))

    def _run(self, message: Message) -> _Finished:
        try:
            return self._call(message)
        except BaseException:  # never leave a call uncounted: the main thread waits for each one
            logger.exception("Outbox delivery of message %s ended abruptly; it stays leased", message.pk)
            return message, None, time.monotonic()


def outbox_deliver_now(*, message_ids: list[int]) -> list[Message]:
    """Support's "Retry now": failed messages are re-queued, pending ones made due, and each is then
    attempted by the caller. Each is claimed like any worker claim, just before its attempt (so its
    lease cannot run out while earlier ones are sent); one that a sender holds is left to it."""
    message_requeue(message_ids=message_ids)
    message_make_due(message_ids=message_ids)
    attempted = []
    for message_id in message_ids:
        for message in outbox_claim(limit=1, message_ids=[message_id]):
            attempted.append(message_attempt_delivery(message=message))
    return attempted


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    due: int
    #: Due for longer than OUTBOX_OVERDUE_SECONDS: no worker is running, or workers cannot keep up.
    overdue: int
    oldest_due_age_seconds: float


def outbox_stats() -> OutboxStats:
    """How the outbox stands, for /metrics and for the admin to flag overdue pending messages."""
    now = timezone.now()
    pending = _pending()
    due = _claimable(now)
    oldest = due.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    overdue_before = now - timedelta(seconds=settings.OUTBOX_OVERDUE_SECONDS)
    return OutboxStats(
        pending=pending.count(),
        due=due.count(),
        overdue=due.filter(next_attempt_at__lte=overdue_before).count(),
        oldest_due_age_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )


def outbox_overdue(*, older_than_seconds: float | None = None):
    """Pending outbound messages due for longer than ``older_than_seconds`` (OUTBOX_OVERDUE_SECONDS):
    a queryset for the admin to flag them."""
    seconds = settings.OUTBOX_OVERDUE_SECONDS if older_than_seconds is None else older_than_seconds
    now = timezone.now()
    return _claimable(now).filter(next_attempt_at__lte=now - timedelta(seconds=seconds))
