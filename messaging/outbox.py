"""The outbox: claiming due ``pending`` messages and delivering them, from any number of workers.

A claim is a lease. In one short transaction the worker locks due rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` (rows another worker is claiming are skipped, not waited for)
and moves their ``next_attempt_at`` forward by ``OUTBOX_LEASE_SECONDS``, so no other worker sees them
as due. The provider is then called with no transaction open. The attempt's outcome replaces the
lease (``sent``, ``failed``, or ``pending`` at the next backoff time). A worker that dies mid-send
leaves its leases to expire; the messages then become due again and another worker takes them over,
with the same provider idempotency token, so a send the provider had already accepted is not repeated.

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
from django.utils import timezone

from messaging.models import Direction, Message, MessageStatus
from messaging.services import message_attempt_delivery, message_make_due, message_requeue

logger = logging.getLogger(__name__)

_DATABASE_RETRY_SECONDS = 5.0


def _due(now: datetime):
    return Message.objects.filter(direction=Direction.OUTBOUND, status=MessageStatus.PENDING, next_attempt_at__lte=now)


def outbox_claim(*, limit: int, message_ids: list[int] | None = None) -> list[Message]:
    """Leases up to ``limit`` due messages to the caller, oldest due first."""
    now = timezone.now()
    with transaction.atomic():
        due = _due(now).select_for_update(skip_locked=True)
        if message_ids is not None:
            due = due.filter(pk__in=message_ids)
        claimed = list(due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])
        if not claimed:
            return []
        Message.objects.filter(pk__in=claimed).update(
            next_attempt_at=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS), updated_at=now
        )
    return list(Message.objects.filter(pk__in=claimed).order_by("id"))


def outbox_next_due_at() -> datetime | None:
    """When the earliest pending message falls due (or its lease runs out)."""
    return (
        Message.objects.filter(direction=Direction.OUTBOUND, status=MessageStatus.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
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
    """Support's "Retry now": failed messages are re-queued, pending ones made due, and all of them
    attempted at once by the caller. Claimed like any worker claim, so a worker that holds one of
    them keeps it and it is not sent twice."""
    message_requeue(message_ids=message_ids)
    message_make_due(message_ids=message_ids)
    claimed = outbox_claim(limit=len(message_ids), message_ids=message_ids)
    return [message_attempt_delivery(message=message) for message in claimed]
