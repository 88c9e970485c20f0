"""Guarantees whose key line a test must notice when it is deleted: orphan adoption under both
interleavings of a callback and the send's commit, the adoption guard, a failing event isolated in
its batch, replays of errored and rejected status events, Twilio's less common statuses, and a
provider's retry of an orphan looking for its message again."""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from messaging.models import Message
from messaging.outbox import outbox_claim
from messaging.services import message_attempt_delivery, message_call_providers, message_record_attempts
from messaging.signals import assignment_lookup, provider_message_ids_assigned, register_assignment_lookup
from providers.base import StatusEvent
from tests.factories import ConversationFactory, MessageFactory, OutboxMessageFactory
from tests.webhooks.test_status_batches import post as post_events
from tests.webhooks.test_status_batches import sent_email
from webhooks import services
from webhooks.models import WebhookEvent


def twilio_status(sid: str, status: str, **extra):
    body = urlencode({"MessageSid": sid, "MessageStatus": status, **extra})
    return Client().post("/api/webhooks/sms/status", data=body, content_type="application/x-www-form-urlencoded")


def sent_sms(**fields) -> Message:
    return MessageFactory(**{"direction": "outbound", "status": "sent", "provider": "twilio", **fields})


@pytest.mark.django_db(transaction=True)
def test_a_callback_whose_first_look_misses_a_send_committing_meanwhile_is_applied_by_its_look_again(monkeypatch):
    """The callback looks for the message, misses; the send commits its sid and finds no orphan (the
    callback has not committed); the callback commits and looks again: only that look applies it."""
    pending = OutboxMessageFactory(attempts=1)
    sid = "SM" + uuid.uuid4().hex
    original = services.message_find_outbound
    calls = []

    def first_look_then_the_send_commits(**kwargs):
        found = original(**kwargs)
        calls.append(found)
        if len(calls) == 1:

            def send_commits():
                try:
                    Message.objects.filter(pk=pending.pk).update(provider_message_id=sid, status="sent")
                    assert (
                        services.webhook_apply_orphans(
                            provider="twilio", provider_message_id=sid, message_id=pending.pk
                        )
                        == 0
                    )
                finally:
                    connection.close()

            thread = threading.Thread(target=send_commits)
            thread.start()
            thread.join(timeout=30)
        return found

    monkeypatch.setattr(services, "message_find_outbound", first_look_then_the_send_commits)

    response = twilio_status(sid, "delivered")

    # Stored as an orphan, then applied by the look after its commit: the answer says so.
    assert response.json()["status"] == "processed"
    assert calls[0] is None
    assert calls[-1] is not None
    pending.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (pending.status, event.outcome, event.message_id) == ("delivered", "processed", pending.pk)


@pytest.mark.django_db
def test_an_orphan_committed_before_the_send_is_applied_by_the_send():
    pending = OutboxMessageFactory(attempts=1, provider="twilio")
    twilio_status("SM" + "0" * 32, "delivered")  # not this message's sid: a real orphan stays

    message_attempt_delivery(message=pending)  # the mock answers with a sid derived from the token
    pending.refresh_from_db()
    assert pending.status == "sent"
    twilio_status(pending.provider_message_id, "delivered")

    pending.refresh_from_db()
    assert pending.status == "delivered"


@pytest.mark.django_db
def test_an_orphan_is_adopted_once_even_when_both_sides_find_it():
    message = sent_sms()
    status = StatusEvent(
        provider="twilio",
        event_id=f"{message.provider_message_id}:delivered",
        provider_message_id=message.provider_message_id,
        event_type="delivered",
        meaning="delivered",
    )
    orphan = WebhookEvent.objects.create(
        provider="twilio", kind="status", event_id=status.event_id, outcome="orphan", body="{}"
    )

    first = services._adopt_orphan(orphan, message, status)
    second = services._adopt_orphan(orphan, message, status)

    assert (first, second) == (True, False)
    orphan.refresh_from_db()
    assert orphan.note == "status -> delivered (arrived before the message)"


@pytest.mark.django_db
def test_one_event_failing_in_processing_fails_alone_in_its_batch(monkeypatch):
    good, bad = (
        sent_sms(provider="sendgrid", provider_message_id="a" * 16),
        sent_sms(provider="sendgrid", provider_message_id="b" * 16),
    )
    original = services.message_apply_status

    def broken_for_bad(*, message_id, **kwargs):
        if message_id == bad.pk:
            raise RuntimeError("a bug that only this event meets")
        return original(message_id=message_id, **kwargs)

    monkeypatch.setattr(services, "message_apply_status", broken_for_bad)
    monkeypatch.setattr(services, "message_apply_statuses", lambda **kwargs: 1 / 0)  # the batch path fails too
    events = [
        {"event": "delivered", "sg_event_id": "e-good", "sg_message_id": good.provider_message_id},
        {"event": "delivered", "sg_event_id": "e-bad", "sg_message_id": bad.provider_message_id},
    ]

    response = Client().post("/api/webhooks/email/events", data=json.dumps(events), content_type="application/json")

    assert response.status_code == 200
    assert [e["status"] for e in response.json()["events"]] == ["processed", "error"]
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, bad.status) == ("delivered", "sent")
    assert WebhookEvent.objects.get(event_id="e-bad").outcome == "error"

    monkeypatch.undo()
    call_command("replay_webhooks", "--outcome", "error", stdout=open("/dev/null", "w"))  # noqa: SIM115
    bad.refresh_from_db()
    assert bad.status == "delivered"
    assert WebhookEvent.objects.get(event_id="e-bad").outcome == "processed"


@pytest.mark.django_db
def test_a_rejected_status_event_is_replayed_once_it_reads_and_never_twice():
    message = sent_sms()
    event = WebhookEvent.objects.create(
        provider="twilio",
        kind="status",
        outcome="rejected",
        rejection_code="validation_error",
        content_type="application/x-www-form-urlencoded",
        body=urlencode({"MessageSid": message.provider_message_id, "MessageStatus": "delivered"}),
    )

    call_command("replay_webhooks", str(event.pk), stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("replay_webhooks", str(event.pk), stdout=open("/dev/null", "w"))  # noqa: SIM115

    event.refresh_from_db()
    message.refresh_from_db()
    assert (event.outcome, message.status) == ("processed", "delivered")
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("twilio", "ours"),
    [
        ("accepted", "sent"),
        ("scheduled", "sent"),
        ("partially_delivered", "delivered"),
        ("read", "read"),
        ("canceled", "failed"),
    ],
)
def test_twilios_less_common_statuses_map_as_documented(twilio, ours):
    message = sent_sms(status="pending", next_attempt_at="2030-01-01T00:00:00Z")

    twilio_status(message.provider_message_id, twilio)

    message.refresh_from_db()
    assert message.status == ours


@pytest.mark.django_db
def test_a_status_whose_sid_equals_an_inbound_messages_id_touches_only_the_outbound_message():
    inbound = MessageFactory(direction="inbound", status="received", provider="twilio", provider_message_id="SHARED-ID")
    outbound = sent_sms(provider_message_id="SHARED-ID")

    twilio_status("SHARED-ID", "delivered")

    inbound.refresh_from_db()
    outbound.refresh_from_db()
    assert (inbound.status, outbound.status) == ("received", "delivered")


def _one_claimed_send_with_its_outcome(**fields):
    OutboxMessageFactory(**{"provider": "twilio", **fields})
    [claimed] = outbox_claim(limit=1)
    return claimed, message_call_providers(message=claimed)


@pytest.mark.parametrize(
    "in_transaction",
    [
        pytest.param(False, marks=pytest.mark.django_db(transaction=True), id="autocommit: sent with the outcome"),
        pytest.param(True, marks=pytest.mark.django_db, id="in a transaction: after the outcome"),
    ],
)
def test_a_status_event_that_came_before_a_sends_outcome_is_applied_when_it_is_recorded(in_transaction):
    message, outcome = _one_claimed_send_with_its_outcome()
    twilio_status(outcome.result.provider_message_id, "delivered")  # no message has the sid yet: an orphan
    assert WebhookEvent.objects.get(kind="status").outcome == "orphan"

    message_record_attempts(attempts=[(message, outcome)])

    message.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (message.status, event.outcome, event.message_id) == ("delivered", "processed", message.pk)


postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the orphan lock is PostgreSQL's")


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_an_inline_sends_orphan_lookup_is_part_of_its_outcome_statement(monkeypatch):
    """One statement records the outcome and answers whether orphans wait; the receiver, told none
    do, makes no lookup of its own."""
    looked_again = []
    monkeypatch.setattr(services, "_has_orphans", lambda **kwargs: looked_again.append(kwargs) or False)
    message, outcome = _one_claimed_send_with_its_outcome()

    with CaptureQueriesContext(connection) as queries:
        message_record_attempts(attempts=[(message, outcome)])

    assert [query["sql"].split()[0] for query in queries] == ["UPDATE"]
    assert "webhook_orphans_waiting(" in queries[0]["sql"]
    assert looked_again == []
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", outcome.result.provider_message_id)


ORPHAN_LOCK_CLASS = 1869770856  # migration webhooks 0006


def _a_callback_waiting_for_an_assignment() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [ORPHAN_LOCK_CLASS],
        )
        return cursor.fetchone()[0] > 0


def _hold_the_lock(cursor, sid: str) -> None:
    """What a callback waiting for ``sid``'s assignment, or a send recording it, holds (migration 0006)."""
    cursor.execute(
        "SELECT pg_advisory_lock(%s, webhook_assignment_lock_key(%s, %s))", [ORPHAN_LOCK_CLASS, "twilio", sid]
    )


def _advisory_locks_held() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return cursor.fetchone()[0]


def _until(condition, seconds=10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _record_and_close(message, outcome, entered, release):
    try:
        with transaction.atomic():  # the outcome's transaction, kept open: it holds the lock
            message_record_attempts(attempts=[(message, outcome)])
            entered.set()
            release.wait(timeout=30)
    finally:
        connection.close()


def _answer_while_the_outcome_is_held(message, outcome, request):
    """``request``'s answer, made on a thread of its own while the outcome's transaction, which took
    the lock and found no orphan, is held open; the outcome commits once the request waits for it."""
    entered, release = threading.Event(), threading.Event()
    recording = threading.Thread(target=_record_and_close, args=(message, outcome, entered, release))
    recording.start()
    answers = []

    def request_then_close():
        try:
            answers.append(request())
        finally:
            connection.close()

    requesting = threading.Thread(target=request_then_close)
    try:
        assert entered.wait(timeout=10)
        requesting.start()
        _until(_a_callback_waiting_for_an_assignment)
    finally:
        release.set()
        recording.join(timeout=30)
        if requesting.is_alive():
            requesting.join(timeout=30)
    [answer] = answers
    return answer


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_a_callbacks_look_again_waits_for_an_outcome_that_found_no_orphan_to_commit():
    """The outcome's statement took the lock and found no orphan (none was stored yet); the callback
    misses the message, commits its orphan, and its look again waits for the outcome's commit, so it
    finds the message (without the wait it would look before the commit, and the orphan would stay)."""
    message, outcome = _one_claimed_send_with_its_outcome()

    answer = _answer_while_the_outcome_is_held(
        message, outcome, lambda: twilio_status(outcome.result.provider_message_id, "delivered")
    )

    assert answer.json()["status"] == "processed"
    message.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (message.status, event.outcome, event.message_id) == ("delivered", "processed", message.pk)


@pytest.fixture
def looked_up():
    """The ``looked_up`` of each ``provider_message_ids_assigned`` sent."""
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs.get("looked_up"))

    provider_message_ids_assigned.connect(receiver, dispatch_uid="test.looked_up")
    yield sent
    provider_message_ids_assigned.disconnect(dispatch_uid="test.looked_up")


def _orphan(sid: str) -> WebhookEvent:
    return WebhookEvent.objects.create(
        provider="twilio",
        kind="status",
        event_id=f"{sid}:delivered",
        event_type="delivered",
        provider_message_id=sid,
        outcome="orphan",
        content_type="application/x-www-form-urlencoded",
        body=urlencode({"MessageSid": sid, "MessageStatus": "delivered"}),
    )


@pytest.mark.django_db(transaction=True)
@postgresql_only
@pytest.mark.parametrize("lock_held", [False, True], ids=["lock free: answered", "lock held: left to the receivers"])
def test_the_outcomes_statement_answers_whether_orphans_wait_unless_a_callback_holds_the_lock(looked_up, lock_held):
    """With the lock free the statement answers (true here: an orphan is committed); while a callback
    holds it, the statement answers nothing rather than wait, and the receivers look after the commit."""
    message, outcome = _one_claimed_send_with_its_outcome()
    sid = outcome.result.provider_message_id
    _orphan(sid)
    holder = connections.create_connection("default")
    try:
        if lock_held:
            with holder.cursor() as cursor:
                _hold_the_lock(cursor, sid)
        message_record_attempts(attempts=[(message, outcome)])
    finally:
        holder.close()

    assert looked_up == [{} if lock_held else {message.pk: True}]
    message.refresh_from_db()
    assert message.status == "delivered", "applied either way"


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_waiting_for_a_batchs_assignments_holds_no_lock_after_it():
    """A batch of thousands of orphans waits for their ids' locks one at a time and keeps none (each
    held lock takes a slot of PostgreSQL's shared lock table)."""
    ids = [f"SM{number:032x}" for number in range(5000)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_wait_for_assignments(%s::varchar[], %s::varchar[])", [["twilio"] * 5000, ids])
    assert _advisory_locks_held() == 0


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_an_orphan_committed_after_the_outcomes_statement_began_is_seen_by_it():
    """The outcome's UPDATE waits for its row (another transaction holds it), so its statement began
    before a callback stored an orphan, looked again (no message yet) and answered; the lookup reads
    with a snapshot of its own, taken after its lock, so it still sees the orphan."""
    message, outcome = _one_claimed_send_with_its_outcome()
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    recording = None
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM messaging_message WHERE id = %s FOR UPDATE", [message.pk])
        entered, release = threading.Event(), threading.Event()
        release.set()  # the outcome's transaction commits as soon as its statement is done
        recording = threading.Thread(target=_record_and_close, args=(message, outcome, entered, release))
        recording.start()
        _until(lambda: _waiting_for_a_row(message.pk))

        answer = twilio_status(outcome.result.provider_message_id, "delivered")
        assert answer.json()["status"] == "orphan", "the callback found no message: only the send can apply it"
    finally:
        holder.rollback()
        holder.close()
        if recording is not None:
            recording.join(timeout=30)

    message.refresh_from_db()
    event = WebhookEvent.objects.get(kind="status")
    assert (message.status, event.outcome, event.message_id) == ("delivered", "processed", message.pk)


def _waiting_for_a_row(message_id: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
            " AND datname = current_database()",
            ["UPDATE %messaging_message%"],
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.parametrize(
    "in_transaction",
    [
        pytest.param(False, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
        pytest.param(True, marks=pytest.mark.django_db, id="in a transaction"),
    ],
)
@postgresql_only
def test_an_outcome_is_recorded_when_the_lookups_function_is_missing(in_transaction, caplog):
    """Code running ahead of migration webhooks 0006: the outcome is recorded without the lookup and
    the receivers look after the commit, rather than a send the provider took left unrecorded."""
    message, outcome = _one_claimed_send_with_its_outcome()
    _orphan(outcome.result.provider_message_id)
    registered = assignment_lookup()
    register_assignment_lookup(lambda assignment: ("webhook_no_such_function(%s)", [assignment.provider]))
    try:
        message_record_attempts(attempts=[(message, outcome)])
    finally:
        register_assignment_lookup(registered)

    message.refresh_from_db()
    assert message.status == "delivered"
    assert "outcome recorded without its lookup" in caplog.text


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_a_look_again_waits_for_a_send_past_the_requests_own_lock_timeout():
    """The request's lock and statement timeouts (0.5 s and 1 s in production) would end the wait and
    leave the orphan to nobody; the wait has a bound of its own (ASSIGNMENT_WAIT_SECONDS)."""
    sid = "SM" + uuid.uuid4().hex
    orphan = _orphan(sid)
    held = threading.Event()

    def a_send_holding_the_lock_for_a_while():
        holder = connections.create_connection("default")
        try:
            with holder.cursor() as cursor:
                _hold_the_lock(cursor, sid)
            held.set()
            time.sleep(0.3)
        finally:
            holder.close()  # the send commits: its lock goes

    sending = threading.Thread(target=a_send_holding_the_lock_for_a_while)
    sending.start()
    assert held.wait(timeout=10)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '50ms'")
        cursor.execute("SET statement_timeout = '100ms'")
    try:
        services._wait_for_assignments([orphan])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
            cursor.execute("RESET statement_timeout")
        sending.join(timeout=30)
    assert _advisory_locks_held() == 0


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_a_batchs_look_again_waits_for_an_outcome_that_found_no_orphan_to_commit():
    """As for a single callback, through a SendGrid batch: its orphans' look again, after the batch's
    commit, waits for the outcome's commit and finds the message."""
    thread = ConversationFactory(channel="email", participant_a="someone@example.com", participant_b="us@example.com")
    message, outcome = _one_claimed_send_with_its_outcome(conversation=thread, type="email", provider="sendgrid")
    events = [
        {"event": "delivered", "sg_event_id": "e-ours", "sg_message_id": outcome.result.provider_message_id},
        {"event": "delivered", "sg_event_id": "e-other", "sg_message_id": "c" * 16 + ".filter001.1.0"},
    ]

    answer = _answer_while_the_outcome_is_held(
        message,
        outcome,
        lambda: Client().post("/api/webhooks/email/events", data=json.dumps(events), content_type="application/json"),
    )

    assert [event["status"] for event in answer.json()["events"]] == ["processed", "orphan"]
    message.refresh_from_db()
    assert message.status == "delivered"


# A provider's retry of an orphan looks again ----------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_of_an_orphan_whose_look_again_never_ran_applies_it():
    """The first delivery committed its orphan and failed before its look again, and the send had
    looked before the orphan committed: nothing applied it. The provider's retry, a duplicate, looks in
    the first delivery's place."""
    sid = "SM" + uuid.uuid4().hex
    assert twilio_status(sid, "delivered").json()["status"] == "orphan"
    message = sent_sms(provider_message_id=sid)  # stored without finding the orphan, which was not committed

    retry = twilio_status(sid, "delivered")

    assert retry.status_code == 200
    assert (retry.json()["status"], retry.json()["message_id"]) == ("duplicate", message.pk)
    message.refresh_from_db()
    assert message.status == "delivered"
    orphan = WebhookEvent.objects.get(kind="status", outcome="processed")
    assert (orphan.message_id, orphan.note) == (message.pk, "status -> delivered (arrived before the message)")
    assert WebhookEvent.objects.get(kind="status", outcome="duplicate").message_id == message.pk


@pytest.mark.django_db
def test_a_retry_of_an_orphan_whose_message_is_still_unknown_stays_a_duplicate_of_it():
    sid = "SM" + uuid.uuid4().hex
    twilio_status(sid, "delivered")

    retry = twilio_status(sid, "delivered")

    assert (retry.status_code, retry.json()["status"], retry.json()["message_id"]) == (200, "duplicate", None)
    assert sorted(WebhookEvent.objects.filter(kind="status").values_list("outcome", flat=True)) == [
        "duplicate",
        "orphan",
    ]


@pytest.mark.django_db
def test_a_batch_bringing_an_orphan_again_applies_it_once_its_message_exists():
    ours, other = "a" * 16 + ".filter001.1.0", "b" * 16 + ".filter001.1.0"
    first = [{"event": "delivered", "sg_event_id": "e-ours", "sg_message_id": ours}]
    assert [event["status"] for event in post_events(first).json()["events"]] == ["orphan"]
    message = sent_email(ours)

    again = [*first, {"event": "delivered", "sg_event_id": "e-other", "sg_message_id": other}]
    answer = post_events(again).json()["events"]

    assert [(event["status"], event["message_id"]) for event in answer] == [("duplicate", message.pk), ("orphan", None)]
    message.refresh_from_db()
    assert message.status == "delivered"
    assert WebhookEvent.objects.get(event_id="e-ours", outcome="processed").message_id == message.pk


@pytest.mark.django_db
def test_a_batch_adopts_earlier_and_new_orphans_in_arrival_order(monkeypatch):
    """An earlier orphan brought again and a new one for the same message, whose send commits while
    the batch is claimed: applied in the order they came (delivered, then a bounce that changes
    nothing), not in the order the batch found them."""
    ours = "c" * 16 + ".filter001.1.0"
    post_events([{"event": "delivered", "sg_event_id": "e-1", "sg_message_id": ours}])
    message_appears = services._wait_for_assignments
    created = []

    def the_send_commits_meanwhile(orphans):
        if not created:
            created.append(sent_email(ours))
        return message_appears(orphans)

    monkeypatch.setattr(services, "_wait_for_assignments", the_send_commits_meanwhile)

    answer = post_events(
        [
            {"event": "delivered", "sg_event_id": "e-1", "sg_message_id": ours},
            {"event": "bounce", "sg_event_id": "e-2", "sg_message_id": ours, "reason": "550"},
        ]
    ).json()["events"]

    [message] = created
    assert [(event["status"], event["message_id"]) for event in answer] == [
        ("duplicate", message.pk),
        ("processed", message.pk),
    ]
    message.refresh_from_db()
    assert message.status == "delivered"
    notes = dict(WebhookEvent.objects.filter(outcome="processed").values_list("event_id", "note"))
    assert notes == {
        "e-1": "status -> delivered (arrived before the message)",
        "e-2": "kept: already delivered (arrived before the message)",
    }


@pytest.mark.django_db
def test_a_retry_applies_the_orphan_as_it_was_stored_not_as_the_retry_tells_it():
    """SendGrid's event id does not name the message: a repeat of an orphan's id carrying another
    message and event changes neither; the orphan is applied to its own message, with its own event."""
    ours, another = "d" * 16 + ".filter001.1.0", "e" * 16 + ".filter001.1.0"
    post_events([{"event": "delivered", "sg_event_id": "e-1", "sg_message_id": ours}])
    message, bystander = sent_email(ours), sent_email(another)

    answer = post_events([{"event": "bounce", "sg_event_id": "e-1", "sg_message_id": another}]).json()["events"]

    assert [(event["status"], event["message_id"]) for event in answer] == [("duplicate", message.pk)]
    message.refresh_from_db()
    bystander.refresh_from_db()
    assert (message.status, bystander.status) == ("delivered", "sent")


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_a_retry_whose_look_again_fails_is_still_answered_and_leaves_the_orphan(monkeypatch, batch):
    """The retry was stored; a failure of its look again (the wait for a stalled send running out) must
    not turn its 200 into an error for the provider to retry without end: the orphan stays for
    replay_webhooks, as it did before a retry looked."""
    from django.db import OperationalError

    if batch:
        sg_id = "f" * 16 + ".filter001.1.0"
        deliver = lambda: post_events([{"event": "delivered", "sg_event_id": "e-1", "sg_message_id": sg_id}])  # noqa: E731
        assert deliver().json()["events"][0]["status"] == "orphan"
        sent_email(sg_id)
    else:
        sid = "SM" + uuid.uuid4().hex
        deliver = lambda: twilio_status(sid, "delivered")  # noqa: E731
        assert deliver().json()["status"] == "orphan"
        sent_sms(provider_message_id=sid)

    def stalled(orphans):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(services, "_wait_for_assignments", stalled)

    retry = deliver()

    assert retry.status_code == 200
    outcome = retry.json()["events"][0]["status"] if batch else retry.json()["status"]
    assert outcome == "duplicate"
    assert sorted(WebhookEvent.objects.filter(kind="status").values_list("outcome", flat=True)) == [
        "duplicate",
        "orphan",
    ]


@pytest.mark.django_db
def test_a_batchs_look_again_costs_the_same_statements_for_five_orphans_as_for_twenty():
    """Found orphans are adopted together (one claim, one status pass, one write), not one by one."""

    def statements_for(count: int, tag: str) -> int:
        ids = [f"{tag}{index:015d}.filter001.1.0" for index in range(count)]
        events = [
            {"event": "delivered", "sg_event_id": f"{tag}-{index}", "sg_message_id": sg} for index, sg in enumerate(ids)
        ]
        post_events(events)  # every one an orphan
        for sg_id in ids:
            sent_email(sg_id)
        with CaptureQueriesContext(connection) as queries:
            answer = post_events(events).json()
        assert answer["duplicate"] == count
        assert Message.objects.filter(provider_message_id__in=ids, status="delivered").count() == count
        return len(queries)

    assert statements_for(5, "p") == statements_for(20, "q")


@pytest.mark.django_db(transaction=True)
def test_an_orphan_its_send_adopts_during_the_batchs_look_again_is_answered_processed_and_applied_once(monkeypatch):
    """The send commits its id and adopts the orphan between the batch's lookup and its claim: the
    batch finds it claimed, answers it as the send left it, and applies nothing again."""
    sg_id = "g" * 16 + ".filter001.1.0"
    message = sent_email(sg_id)
    original = services.message_find_outbound_many

    def the_send_adopts_it_meanwhile(**kwargs):
        found = original(**kwargs)

        def send_side():
            try:
                services.webhook_apply_orphans(provider="sendgrid", provider_message_id=sg_id, message_id=message.pk)
            finally:
                connection.close()

        thread = threading.Thread(target=send_side)
        thread.start()
        thread.join(30)
        return found

    monkeypatch.setattr(services, "message_find_outbound_many", lambda **kwargs: {})  # claim and look miss it
    answer = post_events([{"event": "delivered", "sg_event_id": "e-1", "sg_message_id": sg_id}]).json()
    assert answer["orphan"] == 1  # stored as an orphan; its look again found nothing yet

    monkeypatch.setattr(services, "message_find_outbound_many", the_send_adopts_it_meanwhile)
    orphan = WebhookEvent.objects.get(event_id="e-1")
    services._adopt_found([(orphan, _stored_delivered(sg_id))])

    assert (orphan.outcome, orphan.message_id) == ("processed", message.pk)  # what the batch answers
    event = WebhookEvent.objects.get(event_id="e-1")
    assert (event.outcome, event.message_id) == ("processed", message.pk)
    assert event.note == "status -> delivered (arrived before the message)"  # the send's, not overwritten
    message.refresh_from_db()
    assert message.status == "delivered"


def _stored_delivered(sg_id: str) -> StatusEvent:
    return StatusEvent(
        provider="sendgrid", event_id="e-1", provider_message_id=sg_id, event_type="delivered", meaning="delivered"
    )


@pytest.mark.django_db
def test_a_batch_bringing_its_own_new_orphan_twice_names_the_message_in_both_answers(monkeypatch):
    sg_id = "h" * 16 + ".filter001.1.0"
    created = []
    waits = services._wait_for_assignments

    def the_send_commits_meanwhile(orphans):
        created.append(created or sent_email(sg_id))
        return waits(orphans)

    monkeypatch.setattr(services, "_wait_for_assignments", the_send_commits_meanwhile)
    event = {"event": "delivered", "sg_event_id": "e-1", "sg_message_id": sg_id}

    answer = post_events([event, event]).json()["events"]

    message = created[0]
    assert [(each["status"], each["message_id"]) for each in answer] == [
        ("processed", message.pk),
        ("duplicate", message.pk),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_a_first_deliverys_failed_look_again_fails_its_request_so_the_provider_delivers_it_again(monkeypatch, batch):
    from django.db import OperationalError

    def stalled(orphans):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(services, "_wait_for_assignments", stalled)
    if batch:
        answer = post_events([{"event": "delivered", "sg_event_id": "e-1", "sg_message_id": "i" * 16}])
    else:
        answer = twilio_status("SM" + uuid.uuid4().hex, "delivered")

    assert answer.status_code == 503
    assert list(WebhookEvent.objects.filter(kind="status").values_list("outcome", flat=True)) == ["orphan"]


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("stored", ["inexact", "unreadable"])
def test_an_earlier_orphan_that_does_not_read_as_stored_is_left_to_the_operator(monkeypatch, batch, stored):
    """As ``replay_webhooks`` refuses them: a body kept inexact, or one that no longer parses."""
    if batch:
        sg_id = "j" * 16 + ".filter001.1.0"
        deliver = lambda: post_events([{"event": "delivered", "sg_event_id": "e-1", "sg_message_id": sg_id}])  # noqa: E731
        deliver()
        message = sent_email(sg_id)
    else:
        sid = "SM" + uuid.uuid4().hex
        deliver = lambda: twilio_status(sid, "delivered")  # noqa: E731
        deliver()
        message = sent_sms(provider_message_id=sid)
    if stored == "inexact":
        WebhookEvent.objects.filter(outcome="orphan").update(body_exact=False)
    else:
        WebhookEvent.objects.filter(outcome="orphan").update(body="not what the provider sends")

    retry = deliver()

    assert retry.status_code == 200
    assert WebhookEvent.objects.filter(outcome="orphan").count() == 1
    message.refresh_from_db()
    assert message.status == "sent"


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_a_batchs_adoption_waits_for_a_send_adopting_the_same_orphan_and_applies_nothing_again():
    """The send has claimed the orphan and applied its status, not yet committed, when a batch's look
    again finds the orphan too: the batch's claim waits for the send's commit and then finds it taken."""
    sg_id = "k" * 16 + ".filter001.1.0"
    message = sent_email(sg_id)
    orphan = WebhookEvent.objects.create(
        provider="sendgrid", kind="status", event_id="e-1", outcome="orphan", provider_message_id=sg_id, body="{}"
    )
    status = _stored_delivered(sg_id)
    adopted, release = threading.Event(), threading.Event()

    def the_send_adopts_and_holds():
        try:
            with transaction.atomic():
                services._adopt_orphan(WebhookEvent.objects.get(pk=orphan.pk), message, status)
                adopted.set()
                release.wait(10)
        finally:
            connection.close()

    def the_batch_looks_again():
        try:
            services._adopt_found([(orphan, status)])
        finally:
            connection.close()

    send = threading.Thread(target=the_send_adopts_and_holds)
    send.start()
    assert adopted.wait(10)
    batch = threading.Thread(target=the_batch_looks_again)
    batch.start()
    time.sleep(0.3)  # the batch reaches its claim and waits there
    release.set()
    send.join(10)
    batch.join(10)

    assert (orphan.outcome, orphan.message_id) == ("processed", message.pk)
    event = WebhookEvent.objects.get(pk=orphan.pk)
    assert event.note == "status -> delivered (arrived before the message)"  # the send's, not overwritten
