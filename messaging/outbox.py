"""The outbox: claiming due ``pending`` messages and delivering them, from any number of workers.

A claim is a lease. In one short transaction the worker locks due, unleased rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` (rows another worker is claiming are skipped, not waited for),
sets their ``leased_until`` to now + ``OUTBOX_LEASE_SECONDS`` so no other worker claims them, and
counts the attempt it is about to make in ``attempts``. The provider is then called with no
transaction open, and the outcome ends the lease (``sent``, ``failed``, or ``pending`` with the next
backoff time). A worker that dies mid-send leaves its leases to run out; the messages are then taken
over by another worker with the same provider idempotency token, so a send the provider had already
accepted is not repeated, and the lost attempt still counts towards ``MAX_ATTEMPTS``.

On SQLite (development) there is no SKIP LOCKED; transactions there take the write lock when they
begin, so claims are still exclusive, but one worker is the supported set-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from core.logging import log_context
from core.metrics import record_attempt
from messaging.models import Direction, Message, MessageStatus
from messaging.services import message_attempt_delivery, message_make_due, message_requeue

logger = logging.getLogger(__name__)

_DATABASE_RETRY_SECONDS = 5.0


def _pending():
    return Message.objects.filter(direction=Direction.OUTBOUND, status=MessageStatus.PENDING)


def _claimable(now: datetime):
    return _pending().filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now), next_attempt_at__lte=now)


def outbox_claim(*, limit: int, message_ids: list[int] | None = None) -> list[Message]:
    """Leases up to ``limit`` due messages to the caller, oldest due first, counting the attempt the
    caller is about to make. A message whose attempts are already used up (the last one was lost:
    its sender died, or recording its outcome kept failing) is failed instead of tried again."""
    now = timezone.now()
    with transaction.atomic():
        due = _claimable(now).select_for_update(skip_locked=True)
        if message_ids is not None:
            due = due.filter(pk__in=message_ids)
        rows = list(due.order_by("next_attempt_at", "id").values_list("pk", "attempts", "attempt_base")[:limit])
        exhausted = [pk for pk, attempts, base in rows if attempts - base >= settings.MAX_ATTEMPTS]
        claimed = [pk for pk, attempts, base in rows if attempts - base < settings.MAX_ATTEMPTS]
        if exhausted:
            Message.objects.filter(pk__in=exhausted).update(
                status=MessageStatus.FAILED,
                next_attempt_at=None,
                leased_until=None,
                last_error={"code": "attempt_lost", "message": "The last attempt never recorded an outcome."},
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
    """Claims due messages while there is a free delivery slot and delivers them on a thread pool.

    ``once``: stop when nothing is due now or within ``due_within`` seconds of the start, instead of
    polling forever. ``stop()`` (SIGTERM) stops claiming; deliveries in flight finish first.
    """

    def __init__(
        self,
        *,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        once: bool = False,
        due_within: float = 0.0,
    ) -> None:
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.once = once
        self.due_within = due_within
        self.report = WorkerReport()
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> WorkerReport:
        horizon = timezone.now() + timedelta(seconds=self.due_within)
        in_flight: set[Future] = set()
        with self._executor() as pool:
            try:
                while not self.stopping:
                    _recycle_connection()
                    free = self.concurrency - len(in_flight)
                    try:
                        claimed = outbox_claim(limit=free) if free else []
                    except DatabaseError:
                        if self.once:
                            raise
                        # The database restarting must not end a long-running worker: wait, try again.
                        logger.exception("Outbox claim failed; retrying in %ss", _DATABASE_RETRY_SECONDS)
                        connection.close()
                        self._stopping.wait(_DATABASE_RETRY_SECONDS)
                        continue
                    in_flight |= {pool.submit(self._deliver, message) for message in claimed}
                    if free and len(claimed) < free:
                        # Everything due now is taken.
                        if self.once and not in_flight and not self._due_before(horizon):
                            break
                        timeout = self._until_next_due()
                    else:
                        timeout = self.poll_interval  # every slot busy: claim again when one frees up
                    if in_flight:
                        _, in_flight = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
                    else:
                        self._stopping.wait(timeout)
            finally:
                if in_flight:
                    logger.info("Outbox worker stopping: finishing %s delivery(ies) in flight", len(in_flight))
                wait(in_flight)
        _recycle_connection()
        return self.report

    def _executor(self) -> Executor:
        if self.concurrency == 1:
            return _InlineExecutor()
        return ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="outbox")

    def _due_before(self, horizon: datetime) -> bool:
        due_at = outbox_next_due_at()
        return due_at is not None and due_at <= horizon

    def _until_next_due(self) -> float:
        due_at = outbox_next_due_at()
        if due_at is None:
            return self.poll_interval
        return max(0.01, min(self.poll_interval, (due_at - timezone.now()).total_seconds()))

    def _deliver(self, message: Message) -> None:
        # Every line logged during this delivery names the message and the attempt.
        with log_context(message_id=message.pk, attempt=message.attempts):
            self._deliver_logged(message)

    def _deliver_logged(self, message: Message) -> None:
        started = time.monotonic()
        try:
            result = message_attempt_delivery(message=message)
        except Exception:
            # A database error while recording: the lease runs out and the message is tried again.
            logger.exception("Outbox delivery of message %s failed; it stays leased until it is retried", message.pk)
            outcome = "error"
        else:
            outcome = result.status
            logger.info(
                "Message %s attempt %s: %s in %.0f ms",
                message.pk,
                result.attempts,
                result.status,
                (time.monotonic() - started) * 1000,
            )
        finally:
            record_attempt(
                channel=message.channel,
                provider=message.provider,
                outcome=outcome,
                source="outbox",
                seconds=time.monotonic() - started,
            )
            if threading.current_thread() is not threading.main_thread():
                # Each pool thread has its own connection; don't leave it open between messages.
                connection.close()
        with self._lock:
            self.report.attempted += 1
            self.report.outcomes[outcome] += 1


def _recycle_connection() -> None:
    """Drops a broken or expired connection between rounds, as Django does between requests.
    Not inside a transaction (a test's): there it would close the connection under the caller."""
    if not connection.in_atomic_block:
        close_old_connections()


class _InlineExecutor(Executor):
    """``--concurrency 1``: deliver on the worker's own thread and connection."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


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
