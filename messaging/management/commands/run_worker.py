"""manage.py run_worker: deliver the outbox. Run as many as you like, on any machines."""

from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from core.cli import int_between, non_negative_seconds
from core.startup import freeze_start_up_objects
from messaging.outbox import OutboxWorker


class Command(BaseCommand):
    help = (
        "Delivers pending outbound messages as they fall due: claims them (SKIP LOCKED leases), calls the "
        "provider, records the outcome and schedules retries. SIGTERM or Ctrl-C finishes the deliveries in "
        "flight and exits."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--once",
            action="store_true",
            help="Deliver what is due now (and what falls due within --due-within seconds), then exit.",
        )
        parser.add_argument(
            "--concurrency",
            type=int_between(1, 1024),
            default=settings.WORKER_CONCURRENCY,
            help=(
                "Provider calls in flight at once at most, 1-1024, on threads that never touch the database: "
                "WORKER_FIRST_THREADS to start with, more while more finish calls faster; fewer while the "
                "provider queues them. "
                "Default: WORKER_CONCURRENCY (%(default)s)."
            ),
        )
        parser.add_argument(
            "--batch-size",
            type=int_between(1, 1000),
            default=settings.WORKER_BATCH_SIZE,
            help="Due messages leased by one claim (one statement), 1-1000. Default: WORKER_BATCH_SIZE (%(default)s).",
        )
        parser.add_argument(
            "--due-within",
            type=non_negative_seconds,
            default=None,
            help=(
                "With --once: also wait for retries falling due within this many seconds of the start. "
                "Default: twice RETRY_BASE_DELAY_SECONDS, so a burst of just-failed sends is included."
            ),
        )
        parser.add_argument(
            "--poll-interval",
            type=non_negative_seconds,
            default=settings.WORKER_POLL_SECONDS,
            help="Seconds between looks at the outbox when idle. Default: WORKER_POLL_SECONDS (%(default)s).",
        )

    def handle(self, *args, once, concurrency, batch_size, due_within, poll_interval, **options):
        if due_within is None:
            due_within = settings.RETRY_BASE_DELAY_SECONDS * 2 if once else 0.0
        worker = OutboxWorker(
            concurrency=concurrency,
            batch_size=batch_size,
            poll_interval=max(poll_interval, 0.05),
            once=once,
            due_within=due_within,
        )

        def request_stop(signum, frame):
            self.stderr.write(f"{signal.Signals(signum).name}: finishing deliveries in flight, then exiting.")
            worker.stop()

        if not once:  # a long-running process: its start-up objects out of full collections (core/startup.py)
            frozen = freeze_start_up_objects(urlconf=False)
            if frozen is not None:
                self.stdout.write(f"Outbox worker: {frozen} start-up objects frozen out of the garbage collector.")
        previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        mode = "once" if once else "continuously"
        self.stdout.write(
            f"Outbox worker running {mode}: up to {concurrency} provider call(s) in flight, "
            f"on {worker.first_threads} delivery thread(s) to start with."
        )
        try:
            report = worker.run()
        except DatabaseError as exc:
            raise CommandError(f"Database error, worker stopped: {exc}") from exc
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"Outbox worker done: {report}.")
