"""The outbox's batches: one statement claims many rows, accepted sends are recorded in one UPDATE, and
the provider calls run on threads that never touch the database."""

import json
import logging
import re
import threading
import time
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.prepared import numbered
from messaging import outbox, services
from messaging.models import Message
from messaging.outbox import OutboxWorker, outbox_claim
from messaging.services import message_call_providers, message_record_attempts
from providers.base import SendResult
from providers.twilio import TwilioProvider
from tests.factories import OutboxMessageFactory
from tests.prepared_statements import prepared_runs
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def statements(queries, verb):
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(verb)]


def test_a_claim_of_many_rows_is_one_statement():
    OutboxMessageFactory.create_batch(5)

    with CaptureQueriesContext(connection) as queries:
        claimed = outbox_claim(limit=10)

    assert len(claimed) == 5
    assert len(queries.captured_queries) == 1
    assert {m.attempts for m in claimed} == {1}
    assert all(m.leased_until is not None for m in claimed)


def test_a_claim_fails_exhausted_rows_and_leases_the_rest_in_the_same_statement(settings):
    settings.MAX_ATTEMPTS = 2
    lost = OutboxMessageFactory(attempts=2)
    due = OutboxMessageFactory(attempts=1)

    claimed = outbox_claim(limit=10)

    assert [m.pk for m in claimed] == [due.pk]
    lost.refresh_from_db()
    assert (lost.status, lost.attempts, lost.last_error["code"]) == ("failed", 2, "attempt_lost")
    assert lost.next_attempt_at is None


def test_accepted_sends_of_a_batch_are_recorded_in_one_update():
    OutboxMessageFactory.create_batch(4)
    claimed = outbox_claim(limit=10)
    attempts = [(message, message_call_providers(message=message)) for message in claimed]

    with CaptureQueriesContext(connection) as queries:
        message_record_attempts(attempts=attempts)

    assert len([query for query in queries.captured_queries if " SET " in query["sql"]]) == 1
    assert all(message.status == "sent" for message in claimed), "updated in memory too"
    stored = {m.pk: m for m in Message.objects.all()}
    for message in claimed:
        assert stored[message.pk].status == "sent"
        assert stored[message.pk].provider_message_id == message.provider_message_id
        assert stored[message.pk].leased_until is None
        assert stored[message.pk].metadata["accepted_by"] == "twilio"


def test_a_batch_with_a_provider_id_already_stored_fails_that_message_alone(monkeypatch):
    OutboxMessageFactory(provider="twilio", status="sent", provider_message_id="SM" + "d" * 32)
    OutboxMessageFactory.create_batch(3)
    claimed = outbox_claim(limit=10)
    clash = SendResult(provider="twilio", provider_message_id="SM" + "d" * 32, status="queued")
    attempts = [(message, message_call_providers(message=message)) for message in claimed]
    attempts[1] = (attempts[1][0], type(attempts[1][1])(result=clash, accepted_by="twilio"))

    message_record_attempts(attempts=attempts)

    statuses = {m.pk: m.status for m in Message.objects.filter(pk__in=[m.pk for m in claimed])}
    assert statuses == {claimed[0].pk: "sent", claimed[1].pk: "failed", claimed[2].pk: "sent"}
    assert Message.objects.get(pk=claimed[1].pk).last_error["code"] == "provider_id_conflict"


def test_a_message_no_longer_pending_is_not_overwritten_by_a_late_batch():
    OutboxMessageFactory.create_batch(2)
    claimed = outbox_claim(limit=10)
    attempts = [(message, message_call_providers(message=message)) for message in claimed]
    Message.objects.filter(pk=claimed[0].pk).update(status="failed")

    message_record_attempts(attempts=attempts)

    assert Message.objects.get(pk=claimed[0].pk).status == "failed"
    assert claimed[0].status == "failed", "re-read when the guarded UPDATE did not apply"
    assert Message.objects.get(pk=claimed[1].pk).status == "sent"


class HeldSends:
    """Holds every provider call until ``count`` are in flight at once (or ``hold`` seconds went by),
    then runs ``before()`` (the provider's own wait, if any) and the call, noting the most in flight,
    the threads the calls ran on and those that had a database connection."""

    def __init__(self, monkeypatch, *, count: int = 0, hold: float = 0.0, before=lambda: None) -> None:
        self.in_flight = 0
        self.peak = 0
        self.names: set[str] = set()
        self.threads_with_connections: list[str] = []
        lock = threading.Lock()
        release = threading.Event()
        original = TwilioProvider.send

        def held_send(provider, message):
            with lock:
                self.names.add(threading.current_thread().name)
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                if self.peak >= count:
                    release.set()
            release.wait(timeout=hold)
            if connection.connection is not None:
                self.threads_with_connections.append(threading.current_thread().name)
            try:
                before()
                return original(provider, message)
            finally:
                with lock:
                    self.in_flight -= 1

        monkeypatch.setattr(TwilioProvider, "send", held_send)


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_many_calls_in_flight_on_threads_without_database_connections(monkeypatch):
    OutboxMessageFactory.create_batch(12)
    sends = HeldSends(monkeypatch, count=12, hold=30)

    report = OutboxWorker(concurrency=16, once=True, poll_interval=0.05).run()

    assert sends.peak == 12, "all twelve provider calls were in flight at once"
    assert report.attempted == 12
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert sends.threads_with_connections == []


@pytest.mark.django_db(transaction=True)
def test_after_a_full_batch_the_worker_claims_again_at_once_while_slots_are_free(monkeypatch):
    """A batch smaller than the free slots: the next claim does not wait for a call to finish (with
    slow providers that would leave slots idle for a whole provider round trip each time)."""
    OutboxMessageFactory.create_batch(12)
    sends = HeldSends(monkeypatch, count=12, hold=5)

    report = OutboxWorker(concurrency=16, batch_size=4, once=True, poll_interval=30).run()

    assert sends.peak == 12, "three batches of four claimed before any call finished"
    assert report.attempted == 12


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_a_call_that_raises_leaves_its_message_leased_and_the_worker_finishes(monkeypatch, caplog, exception):
    """Nothing is recorded for it (its lease runs out and it is tried again), the other messages are
    sent, and the worker does not wait for ever for the call that never returned an outcome."""
    broken, *fine = OutboxMessageFactory.create_batch(3)
    original = outbox.message_call_providers

    def call(*, message):
        if message.pk == broken.pk:
            raise exception("adapter bug")
        return original(message=message)

    monkeypatch.setattr(outbox, "message_call_providers", call)

    report = OutboxWorker(concurrency=4, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 2, "error": 1}
    assert any(f"message {broken.pk}" in record.getMessage() for record in caplog.records if record.exc_info)
    broken.refresh_from_db()
    assert broken.status == "pending"
    assert broken.leased_until is not None
    assert set(Message.objects.filter(pk__in=[m.pk for m in fine]).values_list("status", flat=True)) == {"sent"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_batches_of_any_size_are_recorded_by_one_statement_text():
    """One prepared statement for every batch size (a statement per size would be parsed and planned
    again, and crowd the connection's prepared statements out)."""
    OutboxMessageFactory.create_batch(5)
    for size in (2, 3):
        claimed = outbox_claim(limit=size)
        message_record_attempts(attempts=[(message, message_call_providers(message=message)) for message in claimed])

    statements = prepared_runs("jsonb_to_recordset%m SET status")  # runs of each statement of that text
    assert len(statements) == 1
    assert Message.objects.filter(status="sent").count() == 5


def test_status_events_that_arrived_before_a_batch_was_recorded_are_applied_with_it():
    """The batch's one orphan lookup finds the early events of some of its messages, and only those."""
    OutboxMessageFactory.create_batch(3, provider="twilio")
    claimed = outbox_claim(limit=10)
    attempts = [(message, message_call_providers(message=message)) for message in claimed]
    for _, outcome in attempts[:2]:  # callbacks for sids no message has yet: kept as orphans
        body = urlencode({"MessageSid": outcome.result.provider_message_id, "MessageStatus": "delivered"})
        Client().post("/api/webhooks/sms/status", data=body, content_type="application/x-www-form-urlencoded")

    message_record_attempts(attempts=attempts)

    statuses = [Message.objects.get(pk=message.pk).status for message, _ in attempts]
    assert statuses == ["delivered", "delivered", "sent"]
    assert not WebhookEvent.objects.filter(outcome="orphan").exists()


@pytest.mark.django_db(transaction=True)
def test_one_delivery_thread_that_cannot_start_leaves_the_others_to_deliver(monkeypatch, caplog):
    """A process at its thread limit: the calls go to the threads already running, and the worker
    finishes with every message sent (it used to wait for ever for a call it had counted but never
    queued)."""
    OutboxMessageFactory.create_batch(6)
    started = 0
    original = threading.Thread.start

    def start(thread):
        nonlocal started
        if thread.name.startswith("outbox_") and started >= 2:
            raise RuntimeError("can't start new thread")
        started += thread.name.startswith("outbox_")
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)

    report = OutboxWorker(concurrency=8, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 6}
    warnings = [record for record in caplog.records if "could not start delivery thread" in record.getMessage()]
    assert len(warnings) == 1, "said once; the worker goes on with the threads it has"


@pytest.mark.django_db(transaction=True)
def test_with_one_slot_a_call_that_ends_abruptly_is_counted_and_the_worker_finishes(monkeypatch):
    """``--concurrency 1`` calls on the worker's own thread: an exception no handler expects (here
    SystemExit from an adapter) still comes back as an outcome, so nothing is waited for in vain."""
    broken, _ = OutboxMessageFactory.create_batch(2)
    original = outbox.message_call_providers

    def call(*, message):
        if message.pk == broken.pk:
            raise SystemExit(3)
        return original(message=message)

    monkeypatch.setattr(outbox, "message_call_providers", call)

    report = OutboxWorker(concurrency=1, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 1, "error": 1}
    broken.refresh_from_db()
    assert (broken.status, broken.leased_until is not None) == ("pending", True)


def _store_outbound(rows: int, *, status: str) -> None:
    from bench.ops import insert_series

    thread = OutboxMessageFactory().conversation
    insert_series(
        Message,
        rows=rows,
        params={"thread": thread.pk, "status": status},
        columns={
            "conversation_id": "%(thread)s",
            "channel": "'sms'",
            "direction": "'outbound'",
            "type": "'sms'",
            "from_address": "'+18045551234'",
            "to_address": "'+12025550100'",
            "body": "'sent ' || g",
            "status": "%(status)s",
            "provider": "'twilio'",
            "next_attempt_at": "now()",
            "timestamp": "now()",
        },
    )


def _generic_plan_indexes(cursor, sql: str, arguments: list) -> tuple[set[str], str]:
    """The indexes the generic plan of ``sql`` (what a prepared statement settles on) reads, and the plan."""
    cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    cursor.execute(f"PREPARE planned AS {numbered(sql)}")
    try:
        cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE planned({', '.join(['%s'] * len(arguments))})", arguments)
        plan = json.dumps(cursor.fetchone()[0])
    finally:
        cursor.execute("DEALLOCATE planned")
    return set(re.findall(r'"Index Name": "([^"]+)"', plan)), plan


@pytest.mark.parametrize("asynchronous", [False, True], ids=["synchronous-commit", "asynchronous-commit"])
@pytest.mark.parametrize("sent", [2000, 20000])
def test_a_batch_is_recorded_by_primary_key_whatever_the_status_indexes_hold(sent, asynchronous):
    """Every send is stored pending and then marked sent, which leaves a 'pending' entry in the status
    indexes until VACUUM. The planner cannot see those entries, and a plan that reads the status
    index for 'pending' read them all on every recorded batch. The generic plan (what a prepared
    statement runs) must find the batch's rows by primary key instead."""
    _store_outbound(sent, status="pending")  # sends since the last VACUUM
    with connection.cursor() as cursor:
        cursor.execute("UPDATE messaging_message SET status = 'sent', next_attempt_at = NULL")
        cursor.execute("ANALYZE messaging_message")
        row = {"id": 1, "status": "pending", "provider": "t", "provider_message_id": "x", "metadata": {}}
        arguments = [json.dumps([row]), "sent", timezone.now(), "sent"]
        scanned, plan = _generic_plan_indexes(cursor, services._record_successes_sql(asynchronous), arguments)
    assert scanned == {"messaging_message_pkey"}, plan


@pytest.mark.parametrize("asynchronous", [False, True], ids=["synchronous-commit", "asynchronous-commit"])
@pytest.mark.parametrize("status", ["pending", "sent"])
def test_one_accepted_send_is_recorded_by_primary_key_on_a_small_table(status, asynchronous):
    """A prepared statement keeps the generic plan made on its connection's sixth run until the table
    is analyzed again, so a plan made on a new or small table must not read it whole as it grows. At
    80 rows (ten pages, the size PostgreSQL takes a table never analyzed for), the batch statement's
    plan is a sequential scan; the statement that records one send (every inline send) reads the
    primary key, and neither status index even when most rows are pending."""
    _store_outbound(80, status=status)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_message")
        arguments = ["sent", "t", "x", "{}", timezone.now(), "sent", 1, "pending"]
        scanned, plan = _generic_plan_indexes(cursor, services._record_success_by_key_sql(asynchronous), arguments)
    assert scanned == {"messaging_message_pkey"}, plan
    assert "Seq Scan" not in plan, plan


def _plan_cache_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="plan_cache_mode is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_worker_plans_its_statements_for_their_parameters_while_it_runs(monkeypatch):
    """A generic plan made while the table was new or small (the queue filling as the worker drains it)
    would be kept as the table grows; the worker's connections plan each run instead, also one it opens
    again while it runs, and the setting is back to PostgreSQL's default when it stops."""
    OutboxMessageFactory.create_batch(3)
    modes = []
    original = outbox.outbox_claim

    def claim(*, limit, **kwargs):
        modes.append(_plan_cache_mode())
        if len(modes) == 1:
            connection.close()  # the next statement opens a new connection
        return original(limit=min(limit, 1), **kwargs)

    monkeypatch.setattr(outbox, "outbox_claim", claim)
    assert _plan_cache_mode() == "auto"

    report = OutboxWorker(concurrency=1, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 3}
    assert len(modes) >= 3
    assert set(modes) == {"force_custom_plan"}, modes
    assert _plan_cache_mode() == "auto"


@pytest.mark.django_db(transaction=True)
def test_calls_start_on_the_first_threads_only(monkeypatch):
    """Before the pool has measured what more threads would give, the 30 calls in flight share the
    first three threads instead of a thread each."""
    monkeypatch.setattr(outbox, "_TRIAL_SECONDS", 60.0)  # no measurement ends: the pool stays as it starts
    OutboxMessageFactory.create_batch(30)
    threads = HeldSends(monkeypatch)

    report = OutboxWorker(concurrency=64, first_threads=3, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 30}
    assert threads.names <= {"outbox_0", "outbox_1", "outbox_2"}


def measured_quickly(monkeypatch, *, seconds: float, calls: int) -> None:
    """Each thread count measured over ``seconds`` and ``calls``; only the measured rates decide."""
    monkeypatch.setattr(outbox, "_TRIAL_SECONDS", seconds)
    monkeypatch.setattr(outbox, "_TRIAL_CALLS", calls)
    monkeypatch.setattr(outbox, "_STUCK_SECONDS", 30.0)


@pytest.mark.django_db(transaction=True)
def test_threads_double_while_calls_that_wait_on_the_provider_finish_faster_with_more(monkeypatch):
    """Calls that each wait 20 ms on the provider: two threads finish 100 a second, four 200, and so on,
    so the pool keeps doubling while calls wait."""
    measured_quickly(monkeypatch, seconds=0.1, calls=8)
    OutboxMessageFactory.create_batch(300)
    threads = HeldSends(monkeypatch, before=lambda: time.sleep(0.02))

    report = OutboxWorker(concurrency=64, first_threads=2, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 300}
    assert len(threads.names) >= 16, "2, 4, 8, 16: each doubling finished the calls about twice as fast"


@pytest.mark.django_db(transaction=True)
def test_threads_stop_doubling_when_more_do_not_finish_more(monkeypatch, caplog):
    """Calls that take turns at one lock (as calls that need this process's CPU take turns at the
    interpreter's): four threads finish no more than two, so the pool stays at four."""
    measured_quickly(monkeypatch, seconds=0.2, calls=20)
    OutboxMessageFactory.create_batch(200)
    one_at_a_time = threading.Lock()

    def take_a_turn():
        with one_at_a_time:
            time.sleep(0.004)

    threads = HeldSends(monkeypatch, before=take_a_turn)

    report = OutboxWorker(concurrency=64, first_threads=2, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 200}
    assert threads.names <= {f"outbox_{index}" for index in range(4)}
    assert any("4 delivery threads finish" in record.getMessage() for record in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_when_every_first_thread_waits_on_a_slow_provider_each_call_in_flight_gets_a_thread(monkeypatch, caplog):
    """Two threads, both held by calls that take long, and ten calls waiting: the pool starts a thread
    for each at once, so all twelve are in flight together, and says so once."""
    monkeypatch.setattr(outbox, "_STUCK_SECONDS", 0.05)
    monkeypatch.setattr(outbox, "_TRIAL_SECONDS", 60.0)  # no rate is measured: the held calls decide
    OutboxMessageFactory.create_batch(12)
    threads = HeldSends(monkeypatch, count=12, hold=5)

    report = OutboxWorker(concurrency=16, first_threads=2, once=True, poll_interval=0.05).run()

    assert report.outcomes == {"sent": 12}
    assert threads.peak == 12, "every call in flight had a thread of its own"
    said = [record for record in caplog.records if "has been in its call for over 50 ms" in record.getMessage()]
    assert len(said) == 1


def test_the_first_threads_come_from_the_setting(settings):
    settings.WORKER_FIRST_THREADS = 5

    assert OutboxWorker(concurrency=64).first_threads == 5


def test_a_pool_that_stopped_doubling_still_gives_a_provider_turned_slow_a_thread_per_call(monkeypatch, caplog):
    """The doubling stops for good once more threads stop helping, but calls that then block for long
    (a provider turned slow) still get a thread each once every thread has waited on its call."""
    monkeypatch.setattr(outbox, "_TRIAL_SECONDS", 0.2)
    monkeypatch.setattr(outbox, "_TRIAL_CALLS", 20)
    turns = threading.Lock()
    lock = threading.Lock()
    release = threading.Event()
    blocked = 0
    peak = 0

    def call(message):
        nonlocal blocked, peak
        if message == "slow":
            with lock:
                blocked += 1
                peak = max(peak, blocked)
            release.wait(timeout=5)
            with lock:
                blocked -= 1
        else:
            with turns:  # one at a time, however many threads
                time.sleep(0.004)
        return message, None, time.monotonic()

    with outbox._DeliveryPool(size=32, call=call, first_threads=2, stuck_after=0.05) as pool:
        for _ in range(200):
            pool.submit("fast")
        while pool.in_flight:
            pool.finished(timeout=None)
        assert any("staying at 4" in record.getMessage() for record in caplog.records)

        for _ in range(12):
            pool.submit("slow")
        deadline = time.monotonic() + 3
        while peak < 12 and time.monotonic() < deadline:
            pool.finished(timeout=0.05)
        release.set()
        while pool.in_flight:
            pool.finished(timeout=None)

    assert peak == 12, "every slow call had a thread of its own"


def drain(pool, calls: list, *, until: float = 30.0, taken: dict | None = None) -> None:
    """Submits ``calls`` as a worker does (no more than the pool's room), noting in ``taken`` when each
    was submitted, and collects every outcome."""
    waiting = list(calls)
    deadline = time.monotonic() + until
    while (waiting or pool.in_flight) and time.monotonic() < deadline:
        for _ in range(min(pool.room, len(waiting))):
            call = waiting.pop()
            if taken is not None:
                taken[call] = time.monotonic()
            pool.submit(call)
        if pool.in_flight:
            pool.finished(timeout=0.05)
    assert not waiting, "every call was made in time"
    assert not pool.in_flight, "every call was collected in time"


def windowed_pool(call, *, size: int = 64, **options):
    """A pool with every thread it may need from the start (only its window holds calls back), that
    calls a call's 50 ms slow unless ``options`` say otherwise."""
    return outbox._DeliveryPool(
        size=size, call=call, first_threads=size, stuck_after=30.0, **{"slow_after": 0.05, **options}
    )


def cut_to_the_least_window(pool) -> None:
    """200 calls of a provider slower than the pool's slow call (the caller's): the window ends at 8."""
    drain(pool, ["message"] * 200)
    assert pool._window == 8


class Provider:
    """Notes how many calls are in it at once: ``peak`` over the whole run, ``late_peak`` over the
    calls made after ``late_after`` had been made."""

    def __init__(self, *, late_after: int) -> None:
        self.lock = threading.Lock()
        self.in_call = 0
        self.made = 0
        self.peak = 0
        self.late_peak = 0
        self.late_after = late_after

    def call(self, work):
        def made(message):
            with self.lock:
                self.in_call += 1
                self.made += 1
                self.peak = max(self.peak, self.in_call)
                if self.made > self.late_after:
                    self.late_peak = max(self.late_peak, self.in_call)
            try:
                work()
            finally:
                with self.lock:
                    self.in_call -= 1
            return message, None, time.monotonic()

        return made


def test_a_provider_that_queues_the_calls_is_given_fewer_at_once(caplog):
    """A provider that answers one call at a time (5 ms each) makes a call wait longer the more it is
    given: with all 64 its mean call passes the pool's 50 ms, and the pool halves what it gives it
    until the calls come back in time, instead of keeping 64 in it and its slowest calls near the
    timeout."""
    provider = Provider(late_after=300)
    one_at_a_time = threading.Lock()

    def answer():
        with one_at_a_time:
            time.sleep(0.005)

    with windowed_pool(provider.call(answer)) as pool:
        drain(pool, ["message"] * 600)

    assert provider.late_peak <= 20, "after the cuts the provider had about as many calls as it answers in 50 ms"
    said = [
        record
        for record in caplog.records
        if "calls at once from now" in record.getMessage() and record.levelno >= logging.WARNING
    ]
    assert len(said) == 1, "the first cut is said, the next ones within a minute only at DEBUG"
    assert said[0].levelname == "WARNING"
    assert "on average, over 50 ms: the provider is queueing them" in said[0].getMessage()


def test_a_provider_that_answers_in_time_is_given_every_call_in_flight(caplog):
    """Calls of 20 ms each, however many at once, against a pool that calls 1 s slow: the provider has
    all 64 calls the pool holds at once, and the window is never cut."""
    provider = Provider(late_after=0)

    with windowed_pool(provider.call(lambda: time.sleep(0.02)), slow_after=1.0) as pool:
        drain(pool, ["message"] * 600)

    assert provider.peak == 64
    assert not [record for record in caplog.records if "calls at once from now" in record.getMessage()]


def test_after_a_cut_a_provider_that_answers_well_in_time_soon_gets_every_call_again():
    """Calls of 100 ms against a pool that calls 50 ms slow: the window is cut to its least, 8. Once
    the calls take 5 ms (well under half of 50 ms) the window doubles each round trip again rather
    than growing by one, and the provider soon has all 64 calls at once."""
    provider = Provider(late_after=0)
    slow = threading.Event()
    slow.set()

    def answer():
        time.sleep(0.1 if slow.is_set() else 0.005)

    with windowed_pool(provider.call(answer)) as pool:
        cut_to_the_least_window(pool)

        slow.clear()
        provider.late_after = provider.made
        provider.late_peak = 0
        drain(pool, ["message"] * 400)

    assert provider.late_peak == 64


def test_the_default_slow_call_is_a_quarter_of_the_provider_timeout(settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 8.0

    with outbox._DeliveryPool(size=64, call=lambda message: (message, None, 0.0), first_threads=4) as pool:
        assert pool._slow_after == 2.0


def test_after_a_cut_the_pool_holds_no_more_than_twice_what_its_provider_is_given():
    """A worker leases what its pool has room for: with the window cut to 8, 16 calls (in flight and
    waiting their turn), so a leased message waits about one call's time, never for its lease to end."""
    with windowed_pool(Provider(late_after=0).call(lambda: time.sleep(0.1))) as pool:
        assert pool.capacity == 64
        cut_to_the_least_window(pool)

        assert pool.capacity == 16
        for _ in range(pool.room):
            pool.submit("message")
        assert pool.room == 0
        while pool.in_flight:
            pool.finished(timeout=None)


def test_a_taken_message_waits_for_the_window_no_longer_than_its_lease_allows():
    """Calls of 100 ms against a pool that calls 50 ms slow, 256 at most: the window is cut from 256
    to 128, 64 and on, one mean call apart, while messages taken before a cut wait for the smaller
    window after it. None waits longer than ``max_wait`` (here 0.25 s; by default the lease less two
    provider timeouts): then it is handed over whatever the window."""
    taken: dict[int, float] = {}
    waited: list[float] = []

    def call(message):
        waited.append(time.monotonic() - taken[message])
        time.sleep(0.1)
        return message, None, time.monotonic()

    with windowed_pool(call, size=256, max_wait=0.25) as pool:
        drain(pool, list(range(1500)), taken=taken)
        assert pool._window == 8

    assert len(waited) == 1500
    assert max(waited) < 0.25 + 0.15, "handed over once it had waited max_wait, give or take a look"


def test_the_default_longest_wait_is_the_lease_less_two_provider_timeouts(settings):
    settings.OUTBOX_LEASE_SECONDS = 30.0
    settings.PROVIDER_TIMEOUT_SECONDS = 5.0

    with outbox._DeliveryPool(size=64, call=lambda message: (message, None, 0.0), first_threads=4) as pool:
        assert pool._max_wait == 20.0


def test_a_stopping_worker_hands_every_taken_call_to_the_threads_at_once():
    """After a cut to 8 the pool holds 16 calls, 8 of them waiting for the window; a worker that stops
    finishes what it has taken as fast as its threads allow, not 8 at a time."""
    provider = Provider(late_after=0)
    slow = threading.Event()
    slow.set()
    release = threading.Event()

    def answer():
        if slow.is_set():
            time.sleep(0.1)
        else:
            release.wait(timeout=5)

    with windowed_pool(provider.call(answer)) as pool:
        cut_to_the_least_window(pool)
        slow.clear()
        for _ in range(pool.room):
            pool.submit("message")
        assert pool.in_flight == 16

        pool.hand_over_everything()
        deadline = time.monotonic() + 2
        while provider.in_call < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        in_call = provider.in_call
        release.set()
        while pool.in_flight:
            pool.finished(timeout=None)

    assert in_call == 16
