"""A web process's requests run their application code a few at a time, the others waiting their turn
in arrival order (core/admission.py): turns are handed over in order, a request never waits longer
than its bound, a request waiting on something outside the service (a provider's answer, another
request's outcome) lends its turn unless it is inside a transaction, and gunicorn's processes get the
gate from config/gunicorn.py."""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from config import gunicorn as gunicorn_config
from core import admission
from core.admission import AdmissionGate, admitted, waiting_outside
from messaging.models import Message
from providers.base import ProviderTimeout
from tests import payloads
from tests.providers.simulator.conftest import wait_for


@pytest.fixture(autouse=True)
def _no_slot_left_behind(monkeypatch):
    """A slot a test's thread took is this thread's (thread-local) until given back: never into the
    next test. Each test hands back what it took; the environment's settings are not this test's."""
    monkeypatch.delenv("GUNICORN_ACTIVE_REQUESTS", raising=False)
    monkeypatch.delenv("GUNICORN_ACTIVE_WAIT_MS", raising=False)
    yield
    held = getattr(admission._held, "gate", None)
    admission._held.gate = None
    assert held is None, "the test's thread still holds a slot"


def _started(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_turns_are_handed_over_in_the_order_they_were_asked_for():
    gate = AdmissionGate(1, wait=5)
    assert gate.take()
    order: list[str] = []
    waiting = []
    for name in "BCD":

        def run(name: str = name) -> None:
            assert gate.take()
            order.append(name)
            gate.give_back()

        waiting.append(_started(run))
        asked: int = len(waiting)
        wait_for(lambda asked=asked: len(gate._waiting) == asked, "its turn asked for")  # type: ignore[misc]  # B before C, C before D

    assert order == []  # nobody runs while the slot is held
    gate.give_back()
    for thread in waiting:
        thread.join(5)
    assert order == ["B", "C", "D"]
    assert gate.take()  # every turn given back: free at once again
    gate.give_back()


def test_as_many_run_at_once_as_there_are_slots():
    gate = AdmissionGate(2, wait=5)
    assert gate.take()
    assert _in_another_thread(gate.take, within=1) is True  # the second slot, at once
    third: list[bool] = []
    thread = _started(lambda: third.append(gate.take()))
    wait_for(lambda: len(gate._waiting) == 1, "a request waiting for its turn")
    assert third == []
    gate.give_back()
    thread.join(5)
    assert third == [True]


def _in_another_thread(call: Callable[[], Any], *, within: float) -> Any:
    with futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=within)


def test_a_request_that_waited_its_bound_runs_without_a_slot_and_gives_none_back():
    gate = AdmissionGate(1, wait=0.05)
    assert gate.take()

    def late() -> tuple[bool, float]:
        started = time.monotonic()
        took = gate.take()
        gate.give_back()  # holds none: changes nothing
        return took, time.monotonic() - started

    took, waited = _in_another_thread(late, within=5)
    assert took is False
    assert waited >= 0.05
    assert gate.overflows == 1
    assert not gate._waiting
    # The slot is still this thread's: another request waits for it, and gets it when it is given back.
    third: list[bool] = []
    gate.wait = 5
    thread = _started(lambda: third.append(gate.take()))
    wait_for(lambda: len(gate._waiting) == 1, "a request waiting for its turn")
    gate.give_back()
    thread.join(5)
    assert third == [True]


def test_a_request_interrupted_while_waiting_leaves_the_queue_and_loses_no_slot(monkeypatch):
    gate = AdmissionGate(1, wait=5)
    assert gate.take()

    class Interrupted:
        """A waiting request's turn whose wait is interrupted (KeyboardInterrupt, SystemExit)."""

        def acquire(self, timeout: float = -1) -> bool:
            if timeout == -1:
                return True
            raise KeyboardInterrupt

        def release(self) -> None:
            raise AssertionError("an interrupted request was handed the turn")

    monkeypatch.setattr(gate, "_new_turn", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        _in_another_thread(gate.take, within=5)
    assert not gate._waiting
    gate.give_back()
    assert gate.take()  # the slot came back: nobody was waiting
    gate.give_back()


def _handed_then(ending: type[BaseException]) -> Callable[[], Any]:
    """A waiting request's turn whose wait ends only after give_back has handed it over, and then as
    if it had not: timed out (``TimeoutError``: the wait returns False) or interrupted (raised)."""

    class Turn:
        def __init__(self) -> None:
            self.handed = threading.Event()

        def acquire(self, timeout: float = -1) -> bool:
            if timeout == -1:
                return True  # take() marks it taken before it waits
            self.handed.wait(5)
            if ending is TimeoutError:
                return False
            raise ending

        def release(self) -> None:
            self.handed.set()

    return Turn


def test_a_turn_handed_over_to_a_request_interrupted_in_that_instant_goes_to_the_next(monkeypatch):
    gate = AdmissionGate(1, wait=5)
    assert gate.take()
    monkeypatch.setattr(gate, "_new_turn", _handed_then(KeyboardInterrupt))
    interrupted = futures.ThreadPoolExecutor(1)
    waiting = interrupted.submit(gate.take)
    wait_for(lambda: len(gate._waiting) == 1, "a request waiting for its turn")
    gate.give_back()
    with pytest.raises(KeyboardInterrupt):
        waiting.result(timeout=5)
    interrupted.shutdown()
    assert (gate._free, list(gate._waiting)) == (1, [])  # the turn came back rather than being lost
    assert gate.take()
    gate.give_back()


def test_a_thread_holding_a_slot_takes_no_second():
    gate = AdmissionGate(2, wait=5)
    assert gate.take()
    assert gate.take()
    assert gate._free == 1
    gate.give_back()
    assert gate._free == 2


def test_a_turn_handed_over_just_as_the_wait_ran_out_is_kept(monkeypatch):
    gate = AdmissionGate(1, wait=0.01)
    assert gate.take()
    monkeypatch.setattr(gate, "_new_turn", _handed_then(TimeoutError))
    outcome: list[tuple[bool, bool]] = []
    thread = _started(lambda: outcome.append((gate.take(), gate.holds())))
    wait_for(lambda: len(gate._waiting) == 1, "a request waiting for its turn")
    gate.give_back()
    thread.join(5)
    assert outcome == [(True, True)]
    assert gate.overflows == 0


def test_the_application_runs_with_a_slot_and_gives_it_back_before_its_answer_is_written():
    gate = AdmissionGate(1, wait=5)
    let_go = threading.Event()
    calls: list[str] = []
    seen_while_written: list[bool] = []

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        calls.append(environ["PATH_INFO"])
        assert gate.holds()
        if environ["PATH_INFO"] == "/first":
            let_go.wait(5)
        if environ["PATH_INFO"] == "/fails":
            raise RuntimeError("the application failed")

        def answer() -> Any:  # iterated by the server after the call returned, as a streamed answer is
            seen_while_written.append(gate.holds())
            yield b"ok"

        return answer()

    gated = admitted(application, gate, preread=1024)
    assert gated.admission_gate is gate  # type: ignore[attr-defined]
    first = _started(lambda: list(gated({"PATH_INFO": "/first"}, lambda *args: None)))
    wait_for(lambda: calls == ["/first"], "the first request in the application")
    second = _started(lambda: list(gated({"PATH_INFO": "/second"}, lambda *args: None)))
    wait_for(lambda: len(gate._waiting) == 1, "a request waiting for its turn")
    assert calls == ["/first"]  # the second waits for its turn
    let_go.set()
    first.join(5)
    second.join(5)
    assert calls == ["/first", "/second"]
    assert seen_while_written == [False, False]

    with pytest.raises(RuntimeError):
        gated({"PATH_INFO": "/fails"}, lambda *args: None)
    assert not gate.holds()
    assert _in_another_thread(gate.take, within=1) is True  # the failed request gave its slot back


class _SlowBody:
    """A request body as gunicorn hands it over: read from the client as it comes. Notes whether the
    reader held a turn."""

    def __init__(self, data: bytes, gate: AdmissionGate) -> None:
        self._data = io.BytesIO(data)
        self.gate = gate
        self.read_holding: list[bool] = []

    def read(self, size: int = -1) -> bytes:
        self.read_holding.append(self.gate.holds())
        return self._data.read(size)


def _app_reading_its_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return [environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()]


def test_a_body_is_read_before_the_turn_is_taken_so_a_slow_client_holds_up_no_one():
    gate = AdmissionGate(1, wait=5)
    gated = admitted(_app_reading_its_body, gate, preread=1024)
    body = _SlowBody(b'{"text": "hello"}', gate)
    environ: dict[str, Any] = {"CONTENT_LENGTH": "17", "wsgi.input": body}
    assert gated(environ, lambda *args: None) == [b'{"text": "hello"}']
    assert body.read_holding == [False]  # read whole before the turn; the application read memory
    assert environ[admission.WAIT_KEY] >= 0


@pytest.mark.parametrize(
    "environ",
    [
        {"CONTENT_LENGTH": "2000"},  # over the bound: refused later (413) or read as it comes
        {},  # no length (chunked): left to the application
        {"CONTENT_LENGTH": "many"},  # the application answers a malformed length as before
    ],
)
def test_a_body_over_the_bound_or_without_a_length_is_left_to_the_application(environ):
    gate = AdmissionGate(1, wait=5)
    gated = admitted(lambda environ, start_response: [environ["wsgi.input"].read(5)], gate, preread=1024)
    body = _SlowBody(b"x" * 2000, gate)
    assert gated({**environ, "wsgi.input": body}, lambda *args: None) == [b"xxxxx"]
    assert body.read_holding == [True]


def test_requests_that_ran_without_their_turn_are_reported_at_most_once_a_minute(caplog):
    gate = AdmissionGate(1, wait=0.01)
    gated = admitted(lambda environ, start_response: [b"ok"], gate, preread=1024)
    assert gate.take()
    caplog.set_level(logging.WARNING, logger="core.admission")
    for _ in range(3):
        assert _in_another_thread(lambda: gated({}, lambda *args: None), within=5) == [b"ok"]
    gate.give_back()
    assert gate.overflows == 3
    assert [record.getMessage() for record in caplog.records] == [
        "1 request(s) waited 10 ms for their turn and ran without one (GUNICORN_ACTIVE_WAIT_MS)"
    ]


def test_a_wait_outside_the_service_lends_the_turn_to_the_next_request():
    gate = AdmissionGate(1, wait=5)
    assert gate.take()
    order: list[str] = []
    next_request_done = threading.Event()

    def next_request() -> None:
        assert gate.take()
        order.append("next request ran")
        time.sleep(0.02)
        gate.give_back()
        next_request_done.set()

    with waiting_outside():
        assert not gate.holds()
        thread = _started(next_request)
        wait_for(lambda: order == ["next request ran"], "the next request")  # during the wait, not after it
    order.append("took its turn again")
    assert gate.holds()
    assert next_request_done.is_set()  # it waited for the request it let in to finish
    thread.join(5)
    assert order == ["next request ran", "took its turn again"]
    gate.give_back()


def test_the_turn_is_taken_back_after_a_wait_outside_that_failed():
    gate = AdmissionGate(1, wait=5)
    assert gate.take()

    def provider_call() -> None:
        with waiting_outside():
            assert not gate.holds()
            raise ConnectionError("the provider hung up")

    with pytest.raises(ConnectionError):
        provider_call()
    assert gate.holds()
    gate.give_back()


def test_a_turn_not_won_back_in_time_is_not_given_back_for_someone_else():
    gate = AdmissionGate(1, wait=0.05)
    assert gate.take()
    let_go = threading.Event()

    def slow_request() -> None:
        assert gate.take()
        let_go.wait(5)
        gate.give_back()

    with waiting_outside():
        thread = _started(slow_request)
        wait_for(lambda: gate._free == 0 and not gate._waiting, "the slow request to take the turn")
    assert not gate.holds()  # waited its bound: runs on without a turn
    gate.give_back()  # as admitted() does when the request ends: the slow request's slot stays its own
    gate.wait = 5  # the third waits as long as it takes
    waiting: list[bool] = []
    third = _started(lambda: waiting.append(gate.take()))
    wait_for(lambda: len(gate._waiting) == 1, "a request waiting for its turn")
    let_go.set()
    thread.join(5)
    third.join(5)
    assert waiting == [True]  # the slot went from the slow request to the third, once


def test_the_turn_is_taken_back_only_on_the_thread_that_gave_it():
    gate = AdmissionGate(1, wait=5)
    assert gate.take()

    def suspended_inside():
        with waiting_outside():
            yield

    paused = suspended_inside()
    next(paused)
    assert not gate.holds()
    _in_another_thread(paused.close, within=5)  # closed on another thread: that thread takes nothing
    assert gate.take()
    gate.give_back()


def test_a_thread_without_a_slot_waits_outside_as_it_would_without_a_gate():
    gate = AdmissionGate(1, wait=5)
    with waiting_outside():  # no slot held: nothing to lend
        pass
    assert not gate.holds()
    assert gate.take()  # and none was taken on the way out of the block: the slot is still free
    gate.give_back()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_turn_is_kept():
    gate = AdmissionGate(1, wait=0.05)
    assert gate.take()

    def another_request() -> bool:
        took = gate.take()
        gate.give_back()
        return took

    with transaction.atomic(), waiting_outside():
        # Another request of the process could be waiting for this transaction's locks.
        assert gate.holds()
        assert _in_another_thread(another_request, within=5) is False  # it waited its bound
    assert gate.holds()
    with waiting_outside():
        assert not gate.holds()
        assert _in_another_thread(another_request, within=5) is True
    assert gate.holds()
    gate.give_back()


@pytest.fixture
def slot_held(monkeypatch):
    """This thread holds a slot of a one-slot gate, and the code under test is not inside a transaction
    of its own (pytest-django's test transaction would otherwise keep the slot)."""
    monkeypatch.setattr(admission, "_in_transaction", lambda: False)
    gate = AdmissionGate(1, wait=5)
    assert gate.take()
    yield gate
    gate.give_back()


def test_a_provider_call_over_http_lends_the_turn(slot_held, monkeypatch):
    from providers import http

    during: list[bool] = []

    def call(**kwargs: object) -> str:
        during.append(slot_held.holds())
        return "answer"

    monkeypatch.setattr(http, "_http_post", call)
    assert http.http_post(provider="twilio", call=object()) == "answer"  # type: ignore[arg-type]
    assert during == [False]
    assert slot_held.holds()


def _outbound() -> Any:
    from providers.base import OutboundMessage

    return OutboundMessage(
        channel="sms",
        type="sms",
        from_address="+12016661234",
        to_address="+18045551234",
        body="hello",
        attachments=[],
        idempotency_token=f"admission-{os.getpid()}-{time.monotonic_ns()}",
    )


def test_the_mock_providers_latency_lends_the_turn(slot_held, monkeypatch, settings):
    from providers import mock
    from providers.twilio import TwilioProvider

    settings.MOCK_PROVIDER_LATENCY_MS = (1, 1)
    during: list[bool] = []
    recorded = SimpleNamespace(sleep=lambda seconds: during.append(slot_held.holds()), monotonic=time.monotonic)
    monkeypatch.setattr(mock, "time", recorded)
    sent = TwilioProvider().send(_outbound())
    assert sent.status == "queued"
    assert during == [False]
    assert slot_held.holds()

    settings.MOCK_PROVIDER_LATENCY_MS = (300, 300)  # over the timeout: the wait for it lends the turn too
    settings.PROVIDER_TIMEOUT_SECONDS = 0.1
    with pytest.raises(ProviderTimeout):
        TwilioProvider().send(_outbound())
    assert during == [False, False]
    assert slot_held.holds()


@pytest.mark.django_db
def test_a_repeat_waiting_for_the_originals_outcome_lends_the_turn(slot_held, monkeypatch, settings, api):
    from messaging import services

    settings.IDEMPOTENCY_WAIT_SECONDS = 0.2
    body = payloads.sms(client_message_id="waits-outside")
    first = api.post("/api/messages/sms", body, format="json").json()
    Message.objects.filter(pk=first["id"]).update(status="pending", first_outcome="", next_attempt_at=timezone.now())
    during: list[bool] = []

    def sleep(seconds: float) -> None:
        during.append(slot_held.holds())
        time.sleep(seconds)

    monkeypatch.setattr(services, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    response = api.post("/api/messages/sms", body, format="json")
    assert response.status_code == 409
    assert during
    assert set(during) == {False}
    assert slot_held.holds()


@pytest.mark.django_db(transaction=True)
def test_an_inline_send_to_a_slow_provider_lends_the_turn_in_a_real_request(settings, api, monkeypatch):
    from providers import mock

    settings.MOCK_PROVIDER_LATENCY_MS = (1, 1)
    gate = AdmissionGate(1, wait=5)
    assert gate.take()
    during: list[bool] = []
    recorded = SimpleNamespace(sleep=lambda seconds: during.append(gate.holds()), monotonic=time.monotonic)
    monkeypatch.setattr(mock, "time", recorded)
    response = api.post("/api/messages/sms", payloads.sms(), format="json")
    assert response.status_code == 201
    assert during == [False]  # no transaction of the service's own around the provider call
    assert gate.holds()
    gate.give_back()


def _config_worker(*, workers: int, threads: int) -> Any:
    lines: list[str] = []
    return SimpleNamespace(
        pid=1,
        lines=lines,
        log=SimpleNamespace(info=lambda message, *args: lines.append(message % args)),
        cfg=SimpleNamespace(workers=workers, threads=threads),
        wsgi=lambda environ, start_response: [b"ok"],
    )


def test_a_process_runs_one_request_at_a_time_where_processes_are_at_least_the_cores(monkeypatch):
    monkeypatch.delenv("GUNICORN_ACTIVE_REQUESTS", raising=False)
    assert gunicorn_config.active_requests(workers=5, threads=8, cores=2) == 1
    assert gunicorn_config.active_requests(workers=2, threads=8, cores=2) == 1
    assert gunicorn_config.active_requests(workers=1, threads=8, cores=2) == 0  # idle cores otherwise
    assert gunicorn_config.active_requests(workers=5, threads=1, cores=2) == 0  # nothing to order
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "AUTO")
    assert gunicorn_config.active_requests(workers=5, threads=8, cores=2) == 1
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "3")
    assert gunicorn_config.active_requests(workers=1, threads=8, cores=2) == 3
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "0")
    assert gunicorn_config.active_requests(workers=5, threads=8, cores=2) == 0
    # A value that does not parse: test_gunicorn_worker.py, test_a_count_setting_that_does_not_parse_stops_gunicorn
    monkeypatch.delenv("GUNICORN_ACTIVE_WAIT_MS", raising=False)
    assert gunicorn_config.active_wait() == 0.1
    assert gunicorn_config.cores() == len(os.sched_getaffinity(0))  # as nproc counts them
    for wrong in ("0", "100000", "long"):
        monkeypatch.setenv("GUNICORN_ACTIVE_WAIT_MS", wrong)
        with pytest.raises(ImproperlyConfigured, match="GUNICORN_ACTIVE_WAIT_MS"):
            gunicorn_config.active_wait()


def test_post_worker_init_puts_the_gate_before_the_application_once(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")
    monkeypatch.setenv("GUNICORN_WARM_THREADS", "false")
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "2")
    monkeypatch.setenv("GUNICORN_ACTIVE_WAIT_MS", "40")
    monkeypatch.setenv("GUNICORN_SWITCH_INTERVAL_MS", f"{sys.getswitchinterval() * 1000:g}")
    started = _config_worker(workers=5, threads=8)
    application = started.wsgi
    gunicorn_config.post_worker_init(started)
    gate = started.wsgi.admission_gate
    assert (gate.slots, gate.wait) == (2, 0.04)
    from django.conf import settings

    body = _SlowBody(b"x" * settings.MAX_REQUEST_BODY_BYTES, gate)  # the API's limit: read before the turn
    environ = {"CONTENT_LENGTH": str(settings.MAX_REQUEST_BODY_BYTES), "wsgi.input": body}
    assert started.wsgi(environ, None) == [b"ok"]
    assert body.read_holding == [False]
    assert started.wsgi.__wrapped__ is application
    assert started.wsgi({}, None) == [b"ok"]
    assert started.lines == ["Worker 1 runs 2 request(s) at a time, the others in turn (each waits at most 40 ms)"]
    gated = started.wsgi
    gunicorn_config.post_worker_init(started)  # a second call (a hook run twice) wraps nothing more
    assert started.wsgi is gated

    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "0")
    unlimited = _config_worker(workers=5, threads=8)
    application = unlimited.wsgi
    gunicorn_config.post_worker_init(unlimited)
    assert unlimited.wsgi is application
    assert unlimited.lines == ["Worker 1 runs its requests at once (GUNICORN_ACTIVE_REQUESTS)"]


def _get(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return int(body)


@pytest.fixture
def turns_server(gunicorn_server):
    """gunicorn from the project's root (it reads gunicorn.conf.py; tests/core/conftest.py), one
    process of four threads, serving tests/core/gunicorn_turns_app.py."""

    def start(*, active: str) -> int:
        env = {
            "GUNICORN_ACTIVE_REQUESTS": active,
            "GUNICORN_ACTIVE_WAIT_MS": "5000",  # four 50 ms requests in turn: none waits its bound
            "GUNICORN_WARM_THREADS": "false",
        }
        app = "tests.core.gunicorn_turns_app:application"
        port, log = gunicorn_server(app, workers=1, threads=4, env=env)
        assert ("runs 1 request(s) at a time" in log.read_text()) is (active == "1")
        return port

    return start


def _most_at_once(port: int, path: str) -> int:
    """Four requests at once; the most the application had inside at once."""
    with futures.ThreadPoolExecutor(4) as pool:
        return max(pool.map(lambda _: _get(port, path), range(4)))


def test_a_gunicorn_process_runs_its_requests_in_turn_but_lets_waits_outside_overlap(turns_server):
    port = turns_server(active="1")
    assert _most_at_once(port, "/") == 1
    assert _most_at_once(port, "/outside") > 1  # a wait outside the service gives the turn away


def test_a_client_sending_its_body_slowly_holds_up_no_other_request(turns_server):
    port = turns_server(active="1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
        stalled.sendall(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        time.sleep(0.2)  # the process has the request and waits for the other 90 bytes
        started = time.monotonic()
        assert _get(port, "/") == 1
        # Its turn would make this request wait its bound (5 s here) if the body were read in turn.
        assert time.monotonic() - started < 2
        stalled.sendall(b"x" * 90)
        assert stalled.recv(4096).startswith(b"HTTP/1.1 200")


def test_without_the_gate_a_gunicorn_process_runs_its_requests_at_once(turns_server):
    port = turns_server(active="0")
    assert _most_at_once(port, "/") > 1
