"""A repeated delivery that reaches PostgreSQL while its original is still in flight: the original's
transaction stays open until the repeat waits on it, then commits. For tests on a committed database
(``django_db(transaction=True)``), each side on a thread and a connection of its own."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection, transaction


def with_original_in_flight(original: Callable[[], Any], repeat: Callable[[], Any]) -> tuple[Any, Any]:
    """Runs ``original()`` inside a transaction held open until ``repeat()``, in autocommit on another
    thread, waits in PostgreSQL for that transaction; then lets the original commit. Returns what each
    returned (an exception in either is raised here)."""
    stored, release = threading.Event(), threading.Event()

    def run_original() -> Any:
        try:
            with transaction.atomic():  # the original's statement stays uncommitted until released
                answer = original()
                stored.set()
                assert release.wait(timeout=10)
            return answer
        finally:
            stored.set()  # a failed original does not keep the test waiting
            connection.close()

    def run_repeat() -> Any:
        try:
            return repeat()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(run_original)
        assert stored.wait(timeout=10)
        if first.done():
            first.result()  # the original failed before it was stored: its exception, not a timeout
        second = pool.submit(run_repeat)
        try:
            wait_until_a_backend_waits_on_a_transaction()
        finally:
            release.set()
        return first.result(timeout=10), second.result(timeout=10)


def wait_until_a_backend_waits_on_a_transaction() -> None:
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND wait_event = 'transactionid'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the repeat never waited for the original")
