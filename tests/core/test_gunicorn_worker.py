"""gunicorn started from the project's root reads gunicorn.conf.py (config/gunicorn.py): its threaded
processes share a burst of kept-alive connections instead of one process taking most of them
(core/gunicorn_worker.py), a process holding connections still takes a new one at once, a thread
answers a kept-alive connection's next request when it comes within a few milliseconds (and the
connection goes back to the main thread's poller otherwise), and each process opens each thread's
database connection and freezes its start-up objects out of the garbage collector before it serves
(core/startup.py), and reads each of gunicorn's settings once and formats the ``Date`` header once a
second."""

from __future__ import annotations

import email.utils
import gc
import io
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import gunicorn.util
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import clear_url_caches, get_resolver
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

from config import gunicorn as gunicorn_config
from core import gunicorn_worker, startup
from core.gunicorn_worker import (
    KEEPALIVE_LINGER,
    MAX_ACCEPT_PAUSE,
    RANK_INTERVAL,
    STANDBY_DELAY,
    BalancedThreadWorker,
    SettledConfig,
    http_date_once_a_second,
    warm_threads,
)


def _ask(connection: socket.socket, path: str = "/") -> None:
    """Sends one request for ``path`` on a kept-alive connection."""
    connection.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n\r\n")


def _answered_by(connection: socket.socket) -> int:
    """Reads the next answer on ``connection``: the id of the process that served it."""
    return int(_answer(connection)[1])


def _answer(connection: socket.socket) -> tuple[bytes, bytes]:
    """Reads the next answer on ``connection``, a 200 that keeps the connection: its head and body."""
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1]:
        chunk = connection.recv(4096)
        if not chunk:
            raise AssertionError(f"the server closed the connection: {answer!r}")
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"connection: close" not in head.lower(), head
    return head, body


def _pid_of(connection: socket.socket) -> int:
    """Sends one request on a kept-alive connection; the answer is the serving process's id."""
    _ask(connection)
    return _answered_by(connection)


@pytest.fixture
def serve(gunicorn_server):
    """Starts gunicorn from the project's root as `make bench` does (tests/core/conftest.py), serving
    the id of the process that answers, with kept-alive connections held 30 s."""

    def start(*, workers: int, threads: int, env: dict[str, str] | None = None) -> int:
        app = "tests.core.gunicorn_pid_app:application"
        port, _ = gunicorn_server(app, workers=workers, threads=threads, env=env, args=("--keep-alive", "30"))
        return port

    return start


def _connect(port: int, count: int) -> list[socket.socket]:
    connections = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    return connections


def test_bursts_of_connections_are_shared_by_the_processes(serve):
    port = serve(workers=3, threads=8, env={"GUNICORN_ACTIVE_PROCESSES": "0"})  # every process takes them
    busiest = []
    for _ in range(3):
        connections = _connect(port, 12)
        try:
            per_process = Counter(_pid_of(connection) for connection in connections)
            # Kept alive, each connection stays with its process: ask again on every one.
            assert Counter(_pid_of(connection) for connection in connections) == per_process
        finally:
            for connection in connections:
                connection.close()
        assert len(per_process) == 3, per_process
        busiest.append(max(per_process.values()))
        time.sleep(0.3)  # the processes see the connections close
    # An even share is 4 of 12. Balanced, the busiest processes of three bursts took 12 to 14 in
    # all here; with gunicorn's own gthread 16 to 19, or a process was left without any.
    assert sum(busiest) <= 15, busiest


def test_a_process_holding_connections_takes_a_new_one_at_once(serve):
    port = serve(workers=1, threads=8)
    held = _connect(port, 4)
    try:
        for connection in held:
            _pid_of(connection)
        time.sleep(0.1)  # idle now: nothing but the new connection can wake the process
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as new:
            _pid_of(new)
        # Its four connections are idle kept-alive ones: they do not hold back a fifth.
        assert time.monotonic() - started < 0.5
    finally:
        for connection in held:
            connection.close()


def test_kept_alive_connections_are_answered_whether_the_next_request_comes_at_once_or_later(serve):
    # The wait on a real server: no answer lost, none held up, with more connections than threads.
    # (It passes without the wait too; the socket-pair tests below fail without it.)
    port = serve(workers=1, threads=2)
    connections = _connect(port, 3)  # one more than the threads: one always waits for a free one
    try:
        started = time.monotonic()
        pids = set()
        for round_number in range(12):
            # At once (a waiting thread answers), and after the wait ends (the poller hands it over).
            for connection in connections:
                pids.add(_pid_of(connection))
            if round_number % 2:
                time.sleep(0.02)
        assert len(pids) == 1
        # 36 answers with 6 pauses of 20 ms: nothing waited for a thread lingering on another connection.
        assert time.monotonic() - started < 5
    finally:
        for connection in connections:
            connection.close()


def test_the_youngest_processes_take_new_connections_and_the_others_stand_by(gunicorn_server):
    app = "tests.core.gunicorn_pid_app:application"
    env = {"GUNICORN_ACTIVE_PROCESSES": "2"}
    port, log = gunicorn_server(app, workers=4, threads=3, env=env, args=("--keep-alive", "30"))
    booted = [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]
    for _ in range(3):
        connections = _connect(port, 6)
        try:
            for connection in connections:
                _ask(connection, "/")  # as a client does: its request at once
            per_process = Counter(_answered_by(connection) for connection in connections)
        finally:
            for connection in connections:
                connection.close()
        assert set(per_process) == set(booted[-2:]), (per_process, booted)  # the two started last


def test_a_standby_process_takes_a_connection_that_waited_while_the_active_ones_are_full(serve):
    port = serve(workers=3, threads=3, env={"GUNICORN_ACTIVE_PROCESSES": "1"})
    connections = _connect(port, 3)
    try:
        per_process = Counter(_pid_of(connection) for connection in connections)
        assert len(per_process) == 1, per_process  # the active process, a connection for each thread
        for connection in connections:
            _ask(connection, "/?slow")  # every thread of the active process busy for a while
        time.sleep(0.1)
        late = socket.create_connection(("127.0.0.1", port), timeout=10)
        connections.append(late)
        asked = time.monotonic()
        standby = _pid_of(late)
        waited = time.monotonic() - asked
        assert standby not in per_process
        assert waited >= 0.08, waited  # it waited STANDBY_DELAY (0.1 s) for a standby process
        assert waited < 0.45, waited  # not for a thread of the active process (0.5 s and more)
        assert Counter(_answered_by(connection) for connection in connections[:3]) == per_process
    finally:
        for connection in connections:
            connection.close()


# The pause itself, on a worker built without a server ------------------------------------------------


@pytest.fixture
def worker(monkeypatch):
    """A BalancedThreadWorker without sockets: gthread's accept() and listening switch are stubbed.
    ``taken`` says whether the next accept gets a connection (False: another process got it)."""
    balanced = BalancedThreadWorker.__new__(BalancedThreadWorker)
    balanced.nr_conns = 0
    balanced.keepalived_conns = deque()
    balanced.pending_conns = deque()
    balanced.alive = True
    balanced._accepting = True
    balanced.taken = True
    balanced.switches = []

    def accept(self, listener):
        if self.taken:
            self.nr_conns += 1

    def set_accept_enabled(self, enabled):
        self.switches.append(enabled)
        self._accepting = enabled

    monkeypatch.setattr(ThreadWorker, "accept", accept)
    monkeypatch.setattr(ThreadWorker, "set_accept_enabled", set_accept_enabled)
    return balanced


def test_a_process_serving_one_request_keeps_accepting(worker):
    worker.accept(None)
    assert worker.nr_conns == 1
    assert worker.switches == []


def test_the_pause_grows_with_the_requests_in_hand_up_to_a_bound(worker):
    worker.nr_conns = 2
    worker.accept(None)
    assert worker.switches == [False]
    assert worker._accept_pause() == pytest.approx(0.010, abs=0.002)  # serving 3: 2 x 5 ms
    worker.set_accept_enabled(True)  # what the run loop asks while the pause lasts
    assert worker.switches == [False]
    worker.nr_conns = 200
    assert worker._accept_pause() <= MAX_ACCEPT_PAUSE


def test_idle_kept_alive_connections_do_not_lengthen_the_pause(worker):
    worker.nr_conns = 30
    worker.keepalived_conns.extend(range(29))  # a proxy's pool, idle
    worker.accept(None)
    assert worker._accept_pause() <= 0.005  # serving 2: one step at most


def test_a_paused_process_wakes_when_its_pause_ends(worker, monkeypatch):
    timeouts = []
    monkeypatch.setattr(ThreadWorker, "wait_for_and_dispatch_events", lambda self, timeout: timeouts.append(timeout))
    worker.nr_conns = 2
    worker.accept(None)  # serving 3: paused for 10 ms
    worker.wait_for_and_dispatch_events(1.0)  # the run loop's poll timeout
    assert 0 < timeouts[0] <= 0.010


@pytest.fixture
def ranked(worker, monkeypatch):
    """The pause's worker, one of a server's processes whose youngest two take new connections at once;
    ``rank`` is its place among them (0: the youngest), ``queued`` whether connections wait in the
    listening socket's queue."""
    worker.active_processes = 2
    worker.ppid = 1
    worker.cfg = SimpleNamespace(threads=8)
    worker.sockets = [None]
    worker.rank = 3
    worker.queued = True
    monkeypatch.setattr(gunicorn_worker, "process_rank", lambda pid, parent: worker.rank)
    monkeypatch.setattr(gunicorn_worker, "_readable", lambda listener: worker.queued)
    return worker


def test_a_standby_process_leaves_a_new_connection_to_the_active_ones_for_a_while(ranked):
    ranked.accept(None)
    assert ranked.nr_conns == 0
    assert ranked.switches == [False]
    assert ranked._accept_pause() == pytest.approx(STANDBY_DELAY, abs=0.01)
    ranked.set_accept_enabled(True)  # the run loop, while the wait lasts
    assert ranked.switches == [False]


def test_a_standby_process_takes_what_still_waits_after_the_delay_until_the_queue_is_empty(ranked):
    ranked.accept(None)
    ranked._waiting_since -= STANDBY_DELAY  # the delay is over; the connection still waits
    ranked.set_accept_enabled(True)
    assert ranked._accepting
    ranked.accept(None)
    assert ranked.nr_conns == 1
    ranked.accept(None)  # more were queued: taken at once
    assert ranked.nr_conns == 2
    ranked._last_accept = float("-inf")  # the balanced pause over
    ranked.queued = False  # that one was the last
    ranked.accept(None)
    assert ranked.nr_conns == 3
    assert ranked._waiting_since is None  # the next connection is the active processes' again
    ranked.queued = True
    ranked.accept(None)
    assert ranked.nr_conns == 3


def test_a_standby_process_taking_what_waits_still_takes_one_per_thread_and_pauses(ranked):
    ranked.accept(None)
    ranked._waiting_since -= STANDBY_DELAY
    ranked.set_accept_enabled(True)
    ranked.nr_conns = 2
    ranked.accept(None)  # serving 3: the balanced pause, so the other standby processes share the queue
    assert ranked.switches[-1] is False
    assert 0 < ranked._accept_pause() <= 0.010
    ranked.nr_conns = 8
    ranked._last_accept = float("-inf")
    assert ranked._accept_pause() == MAX_ACCEPT_PAUSE  # a connection per thread: no more


def test_a_standby_process_whose_connection_an_active_one_took_waits_again_for_the_next(ranked):
    ranked.accept(None)
    ranked._waiting_since -= STANDBY_DELAY
    ranked.queued = False  # an active process took it meanwhile
    ranked.set_accept_enabled(True)
    assert ranked._accepting
    assert ranked._waiting_since is None
    ranked.queued = True
    ranked.accept(None)  # a new connection: the active processes' first
    assert ranked.nr_conns == 0


def test_an_active_process_takes_new_connections_at_once_up_to_one_per_thread(ranked):
    ranked.rank = 1
    ranked.accept(None)
    assert ranked.nr_conns == 1
    assert ranked.switches == []
    ranked.nr_conns = 7
    ranked._last_accept = float("-inf")  # its pause over
    ranked.accept(None)  # the eighth: every thread has one
    assert ranked.switches == [False]
    assert ranked._accept_pause() > 0
    ranked._last_accept = float("-inf")
    ranked.set_accept_enabled(True)
    assert not ranked._accepting  # until it lets one go
    ranked.keepalived_conns.append("idle")
    ranked.set_accept_enabled(True)
    assert ranked._accepting
    ranked.keepalived_conns.clear()  # that connection's next request came: every thread has one again
    ranked.accept(None)  # a new connection, seen before the process stopped listening
    assert ranked.nr_conns == 8
    assert not ranked._accepting


def test_a_process_looks_at_its_rank_again_after_a_while(ranked):
    assert ranked.standing_by()
    ranked.rank = 1  # a younger process exited: this one is among the youngest two now
    assert ranked.standing_by()  # looked at less than RANK_INTERVAL ago
    ranked._rank_read -= RANK_INTERVAL
    assert not ranked.standing_by()
    ranked.active_processes = 0
    ranked.rank = 9
    assert not ranked.standing_by()


def test_a_process_rank_is_its_place_among_its_siblings_youngest_first(tmp_path):
    def child(pid: int, started: int, name: str = "gunicorn: worker") -> None:
        (tmp_path / str(pid)).mkdir()
        # proc(5): pid (comm) state ppid ... field 22 is the start time; a name may hold ") ".
        fields = ["S", "1"] + ["0"] * 17 + [str(started)] + ["0"] * 5
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")

    (tmp_path / "1" / "task" / "1").mkdir(parents=True)
    (tmp_path / "1" / "task" / "1" / "children").write_text("30 10 20 40 ")
    child(10, 500)
    child(20, 500, name="odd) name")  # the same start time: the higher id is the younger
    child(30, 100)  # respawned pids are not in order of age
    # 40 exited after the parent listed it: not counted
    assert [gunicorn_worker.process_rank(pid, 1, tmp_path) for pid in (20, 10, 30)] == [0, 1, 2]
    assert gunicorn_worker.process_rank(40, 1, tmp_path) is None  # not found: cannot tell
    assert gunicorn_worker.process_rank(10, 2, tmp_path) is None  # no such parent


def test_a_standby_process_that_saw_a_connection_long_ago_waits_again(ranked):
    ranked.accept(None)
    ranked._waiting_since -= STANDBY_DELAY
    ranked.set_accept_enabled(True)  # still queued then: listening again
    # An active process took it before this one's poll said so; much later, a new connection:
    ranked._waiting_since -= 10
    ranked.accept(None)
    assert ranked.nr_conns == 0
    assert ranked._accept_pause() == pytest.approx(STANDBY_DELAY, abs=0.01)


def test_a_standby_process_with_several_listeners_waits_once(ranked, monkeypatch):
    ranked.sockets = ["first", "second"]
    ranked.queued = {"first", "second"}
    monkeypatch.setattr(gunicorn_worker, "_readable", lambda listener: listener in ranked.queued)
    ranked.accept("first")
    ranked._waiting_since -= STANDBY_DELAY
    ranked.set_accept_enabled(True)
    ranked.queued = {"second"}  # taken from the first: the second still holds one
    ranked.accept("first")
    assert ranked.nr_conns == 1
    ranked._last_accept = float("-inf")
    ranked.queued = set()
    ranked.accept("second")  # at once: it waited as long as the first
    assert ranked.nr_conns == 2
    assert ranked._waiting_since is None


def test_new_connections_without_a_request_do_not_fill_an_active_process(ranked):
    ranked.rank = 0
    ranked.nr_conns = 8
    ranked.pending_conns.extend(range(8))  # connected, nothing sent yet: no thread holds them
    ranked.accept(None)
    assert ranked.nr_conns == 9


def test_a_process_that_cannot_read_its_rank_is_active_and_says_so(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")
    monkeypatch.setenv("GUNICORN_WARM_THREADS", "false")
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "0")
    monkeypatch.setenv("GUNICORN_ACTIVE_PROCESSES", "2")
    monkeypatch.setattr(gunicorn_worker, "process_rank", lambda pid, parent: None)
    process = _started_worker(BalancedThreadWorker.__new__(BalancedThreadWorker))
    process.cfg = SimpleNamespace(workers=5, threads=8)
    gunicorn_config.post_worker_init(process)
    assert process.active_processes == 0
    assert any("cannot read its rank in /proc" in line for line in process.lines)
    assert not any("youngest processes" in line for line in process.lines)


def test_losing_the_race_for_a_connection_does_not_pause(worker):
    worker.nr_conns = 4
    worker.taken = False
    worker.accept(None)
    assert worker.switches == []
    assert worker._accept_pause() <= 0


# The wait for a kept-alive connection's next request, on a socket pair --------------------------------


@pytest.fixture
def lingering(monkeypatch):
    """A BalancedThreadWorker with 2 threads and one connection in hand (``conn``, whose client end is
    ``client``). gthread's handle() is stubbed: it reads one 3-byte request from the connection and
    records it in ``answered`` (keep-alive: True; the client gone: False)."""
    server_end, client = socket.socketpair()
    balanced = BalancedThreadWorker.__new__(BalancedThreadWorker)
    balanced.cfg = SimpleNamespace(threads=2)
    balanced.alive = True
    balanced.nr_conns = 1
    balanced.keepalived_conns = deque()
    balanced.pending_conns = deque()
    balanced.answered = []
    balanced.conn = SimpleNamespace(
        sock=server_end, is_http2=False, parser=SimpleNamespace(unreader=SimpleNamespace(buf=io.BytesIO()))
    )
    balanced.client = client

    def handle(self, conn):
        request = conn.sock.recv(3)
        if not request:
            return False
        self.answered.append(request)
        return True

    monkeypatch.setattr(ThreadWorker, "handle", handle)
    yield balanced
    server_end.close()
    client.close()


def _handled(worker) -> tuple[bool, float]:
    started = time.monotonic()
    result = worker.handle(worker.conn)
    return result, time.monotonic() - started


def _handled_until(worker, *, answers: int) -> tuple[bool, float]:
    """handle() with the wait cut short once ``answers`` requests were answered (a 1 s wait otherwise
    ends the test a second later)."""
    real = BalancedThreadWorker._next_request_soon

    def soon(self, conn):
        return len(self.answered) < answers and real(self, conn)

    worker._next_request_soon = soon.__get__(worker)
    return _handled(worker)


def test_a_next_request_sent_at_once_is_answered_on_the_same_thread(lingering):
    lingering.client.sendall(b"onetwo")
    result, _ = _handled(lingering)
    assert result is True  # kept alive: back to the main thread's poller after the wait
    assert lingering.answered == [b"one", b"two"]


def test_a_next_request_sent_during_the_wait_is_answered_on_the_same_thread(lingering):
    lingering.keepalive_linger = 1.0

    def second_request() -> None:
        time.sleep(0.05)
        lingering.client.sendall(b"two")

    lingering.client.sendall(b"one")
    sender = threading.Thread(target=second_request)
    sender.start()
    try:
        result, _ = _handled_until(lingering, answers=2)
    finally:
        sender.join()
    assert result is True
    assert lingering.answered == [b"one", b"two"]


def test_a_quiet_connection_goes_back_to_the_poller_after_the_wait(lingering):
    lingering.client.sendall(b"one")
    result, waited = _handled(lingering)
    assert result is True
    assert lingering.answered == [b"one"]
    assert KEEPALIVE_LINGER * 0.9 <= waited < 1.0  # waited its 5 ms, then handed the connection back


def test_a_client_that_closes_during_the_wait_has_its_connection_closed(lingering):
    lingering.client.sendall(b"one")
    lingering.client.close()
    result, _ = _handled(lingering)
    assert result is False
    assert lingering.answered == [b"one"]


def test_bytes_read_ahead_with_a_body_count_as_the_next_request(lingering):
    lingering.conn.parser.unreader.buf.write(b"GET")  # read with the last request's body
    assert lingering._next_request_soon(lingering.conn) is True


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda worker: setattr(worker, "nr_conns", 2), id="every-thread-has-a-connection"),
        pytest.param(lambda worker: setattr(worker, "alive", False), id="stopping"),
        pytest.param(lambda worker: setattr(worker, "keepalive_linger", 0.0), id="turned-off"),
        pytest.param(lambda worker: setattr(worker.conn, "is_http2", True), id="http2"),
    ],
)
def test_no_wait_when_it_could_hold_up_others_or_is_off(lingering, change):
    change(lingering)
    lingering.client.sendall(b"onetwo")
    result, _ = _handled(lingering)
    assert result is True
    assert lingering.answered == [b"one"]  # the next request, already there, is left to the main thread's poller


def test_a_next_request_does_not_overtake_one_that_queued_for_a_thread_during_the_wait(lingering):
    lingering.keepalive_linger = 1.0

    def busy_then_next_request() -> None:
        time.sleep(0.05)
        lingering.nr_conns = 3  # another connection's request in the pool: 3 in hand, 2 threads
        lingering.client.sendall(b"two")

    lingering.client.sendall(b"one")
    sender = threading.Thread(target=busy_then_next_request)
    sender.start()
    try:
        result, _ = _handled(lingering)
    finally:
        sender.join()
    assert result is True  # back to the main thread's poller, which queues it behind the other
    assert lingering.answered == [b"one"]


def test_bytes_a_tls_socket_decrypted_already_count_as_the_next_request(lingering):
    plain = lingering.conn.sock
    lingering.conn.sock = SimpleNamespace(pending=lambda: 5, fileno=plain.fileno)
    assert lingering._next_request_soon(lingering.conn) is True  # without waiting on the raw socket


def test_a_wait_that_fails_hands_the_connection_back(lingering):
    lingering.log = SimpleNamespace(debug=lambda *args, **kwargs: None)
    lingering.keepalive_linger = float("nan")  # poll() refuses it (the setting itself refuses nan)
    lingering.client.sendall(b"onetwo")
    result, _ = _handled(lingering)
    assert result is True
    assert lingering.answered == [b"one"]


def test_a_closed_connection_is_not_waited_on(lingering, monkeypatch):
    monkeypatch.setattr(ThreadWorker, "handle", lambda self, conn: False)
    lingering.client.sendall(b"onetwo")
    assert lingering.handle(lingering.conn) is False


@pytest.fixture(autouse=True)
def _switch_interval_kept(monkeypatch):
    """post_worker_init sets the interpreter's switch interval: here it is asked for pytest's own, so
    it changes nothing and logs nothing unless a test says otherwise, and it is put back after."""
    before = sys.getswitchinterval()
    monkeypatch.setenv("GUNICORN_SWITCH_INTERVAL_MS", f"{before * 1000:g}")
    yield
    sys.setswitchinterval(before)


def test_a_web_process_gets_its_switch_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")
    monkeypatch.delenv("GUNICORN_SWITCH_INTERVAL_MS")
    assert gunicorn_config.switch_interval() == gunicorn_config.SWITCH_INTERVAL_MS / 1000 == 0.1
    started = _started_worker()
    gunicorn_config.post_worker_init(started)
    assert sys.getswitchinterval() == pytest.approx(0.1)
    assert started.lines == ["Worker 1: switch interval 100 ms"]

    monkeypatch.setenv("GUNICORN_SWITCH_INTERVAL_MS", "20")
    again = _started_worker()
    gunicorn_config.post_worker_init(again)
    assert sys.getswitchinterval() == pytest.approx(0.02)
    for wrong in ("0", "5000", "often"):
        monkeypatch.setenv("GUNICORN_SWITCH_INTERVAL_MS", wrong)
        with pytest.raises(ImproperlyConfigured, match="GUNICORN_SWITCH_INTERVAL_MS"):
            gunicorn_config.switch_interval()


def _started_worker(process: object | None = None) -> Any:
    """What post_worker_init is handed (a plain namespace unless ``process``), whose log lines are kept
    in ``lines``."""
    started: Any = process if process is not None else SimpleNamespace()
    started.lines = []
    started.pid = 1
    started.log = SimpleNamespace(info=lambda message, *args: started.lines.append(message % args))
    return started


def test_every_process_takes_new_connections_at_once_by_default(monkeypatch):
    monkeypatch.delenv("GUNICORN_ACTIVE_PROCESSES", raising=False)
    monkeypatch.delenv("GUNICORN_ACTIVE_REQUESTS", raising=False)
    assert gunicorn_config.active_processes(workers=5, threads=8, cores=2) == 0
    assert gunicorn_config.active_processes(workers=9, threads=8, cores=4) == 0


def test_auto_has_one_more_process_than_the_cores_take_new_connections_first(monkeypatch):
    monkeypatch.setenv("GUNICORN_ACTIVE_PROCESSES", "auto")
    monkeypatch.delenv("GUNICORN_ACTIVE_REQUESTS", raising=False)
    assert gunicorn_config.active_processes(workers=5, threads=8, cores=2) == 3
    assert gunicorn_config.active_processes(workers=9, threads=8, cores=4) == 5
    assert gunicorn_config.active_processes(workers=3, threads=8, cores=2) == 0  # no more processes than that
    assert gunicorn_config.active_processes(workers=5, threads=1, cores=2) == 0  # requests not run in turn
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "0")
    assert gunicorn_config.active_processes(workers=5, threads=8, cores=2) == 0
    monkeypatch.delenv("GUNICORN_ACTIVE_REQUESTS")
    monkeypatch.setenv("GUNICORN_ACTIVE_PROCESSES", "AUTO")
    assert gunicorn_config.active_processes(workers=5, threads=8, cores=2) == 3
    monkeypatch.setenv("GUNICORN_ACTIVE_PROCESSES", "2")
    assert gunicorn_config.active_processes(workers=5, threads=8, cores=2) == 2
    monkeypatch.setenv("GUNICORN_ACTIVE_PROCESSES", "0")
    assert gunicorn_config.active_processes(workers=5, threads=8, cores=2) == 0


@pytest.mark.parametrize("wrong", ["-1", "some", "1.5"])
@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("GUNICORN_ACTIVE_REQUESTS", gunicorn_config.active_requests),
        ("GUNICORN_ACTIVE_PROCESSES", gunicorn_config.active_processes),
    ],
)
def test_a_count_setting_that_does_not_parse_stops_gunicorn(monkeypatch, name, setting, wrong):
    monkeypatch.setenv(name, wrong)
    with pytest.raises(ImproperlyConfigured, match=name):
        setting(workers=5, threads=8, cores=2)


def test_a_balanced_process_gets_its_active_processes_from_the_settings(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")
    monkeypatch.setenv("GUNICORN_WARM_THREADS", "false")
    monkeypatch.setenv("GUNICORN_ACTIVE_REQUESTS", "0")  # no gate on this stand-in process
    monkeypatch.setenv("GUNICORN_ACTIVE_PROCESSES", "2")
    process = _started_worker(BalancedThreadWorker.__new__(BalancedThreadWorker))
    process.cfg = SimpleNamespace(workers=5, threads=8)
    gunicorn_config.post_worker_init(process)
    assert process.active_processes == 2
    assert any("the 2 youngest processes take new connections first" in line for line in process.lines)


def test_a_plain_gthread_process_is_made_balanced_unless_turned_off(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")  # this test's process is pytest's

    def plain():
        return _started_worker(ThreadWorker.__new__(ThreadWorker))

    upgraded = plain()
    gunicorn_config.post_worker_init(upgraded)
    assert type(upgraded) is BalancedThreadWorker

    monkeypatch.setenv("GUNICORN_BALANCED_ACCEPT", "false")
    kept = plain()
    gunicorn_config.post_worker_init(kept)
    assert type(kept) is ThreadWorker


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # pytest's own objects back under the collector


def _collected(thing: object) -> bool:
    """Whether the collector's passes still walk ``thing`` (frozen objects are in no generation)."""
    return any(each is thing for each in gc.get_objects())


def test_start_up_objects_are_frozen_out_of_the_collector_with_the_urlconf(unfrozen):
    clear_url_caches()  # as in a new process: the URLconf not yet resolved
    started = _started_worker()
    gunicorn_config.post_worker_init(started)
    [line] = started.lines
    logged = re.fullmatch(r"Worker 1: (\d+) start-up objects frozen out of the garbage collector", line)
    assert logged, line
    frozen = int(logged[1])
    assert frozen > 10_000  # Django and the project's modules, not a handful
    # The log gives the count frozen; a frozen object may be freed since (by another of pytest's
    # threads, say), none joins: the permanent generation only shrinks.
    assert 0 <= frozen - gc.get_freeze_count() < 100
    resolver = get_resolver()
    assert "url_patterns" in resolver.__dict__  # the hook loaded the URLconf before freezing
    assert not _collected(resolver.url_patterns)
    made_later = [object()]
    assert _collected(made_later)  # what requests make is collected as before


def test_freezing_can_be_turned_off(unfrozen, monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")
    started = _started_worker()
    gunicorn_config.post_worker_init(started)
    assert gc.get_freeze_count() == 0
    assert started.lines == []


def _receivers(signal) -> set[str]:
    return {receiver.__name__ for receiver in signal._live_receivers(sender=None)[0]}


def test_a_web_process_with_debug_off_drops_two_receivers_that_do_nothing_there(monkeypatch, settings):
    from django.core.signals import request_finished, request_started

    monkeypatch.setenv("GC_FREEZE", "false")  # this test's process is pytest's
    monkeypatch.setenv("GUNICORN_WARM_THREADS", "false")
    settings.DEBUG = False
    process = _started_worker()
    gunicorn_config.post_worker_init(process)
    assert "reset_queries" not in _receivers(request_started)
    assert "reset_urlconf" not in _receivers(request_finished)
    assert "close_old_connections" in _receivers(request_started) & _receivers(request_finished)
    assert startup.drop_idle_request_receivers() == []  # gone already: nothing more to drop


def test_with_debug_on_the_receivers_stay(settings):
    from django.core.signals import request_finished, request_started

    settings.DEBUG = True
    assert startup.drop_idle_request_receivers() == []
    assert "reset_queries" in _receivers(request_started)
    assert "reset_urlconf" in _receivers(request_finished)


@pytest.mark.django_db
def test_requests_resolve_and_log_no_queries_without_the_receivers(client, settings):
    from django.db import connection

    settings.DEBUG = False
    startup.drop_idle_request_receivers()
    for _ in range(2):  # the second request after one that finished without reset_urlconf
        assert client.get("/health").status_code == 200
        assert client.get("/health/ready").status_code == 200
    assert len(connection.queries_log) == 0


def test_the_wait_for_a_next_request_is_set_from_the_environment(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")
    assert gunicorn_config.keepalive_linger() == KEEPALIVE_LINGER
    monkeypatch.setenv("GUNICORN_KEEPALIVE_LINGER_MS", "0")
    assert gunicorn_config.keepalive_linger() == 0
    monkeypatch.setenv("GUNICORN_KEEPALIVE_LINGER_MS", "12.5")
    started = _started_worker(ThreadWorker.__new__(ThreadWorker))
    gunicorn_config.post_worker_init(started)
    assert started.keepalive_linger == 0.0125
    assert started.lines == [
        "Worker 1 accepts least-loaded first and waits 12.5 ms for a kept-alive connection's next request"
        " (core.gunicorn_worker.BalancedThreadWorker)"
    ]
    for wrong in ("-1", "5000", "soon"):
        monkeypatch.setenv("GUNICORN_KEEPALIVE_LINGER_MS", wrong)
        with pytest.raises(ImproperlyConfigured, match="GUNICORN_KEEPALIVE_LINGER_MS"):
            gunicorn_config.keepalive_linger()


def _pool_worker(threads: int) -> Any:
    """A started gthread worker as post_worker_init sees it: its thread pool made, no thread yet."""
    started = _started_worker(ThreadWorker.__new__(ThreadWorker))
    started.cfg = SimpleNamespace(workers=1, threads=threads)
    started.tpool = futures.ThreadPoolExecutor(max_workers=threads)
    started.log.warning = lambda message, *args: started.lines.append(message % args)
    return started


def _on_every_thread(started: Any, run) -> list[Any]:
    """``run()``'s result on each of the pool's threads, run as the warm-up runs (``warm_threads``)."""
    results: list[tuple[int, Any]] = []
    assert warm_threads(started, lambda: results.append((threading.get_ident(), run()))) == [None] * started.cfg.threads
    assert len({ident for ident, _ in results}) == started.cfg.threads
    return [result for _, result in results]


def test_each_pool_thread_warms_once_and_the_pool_makes_no_other():
    started = _pool_worker(4)
    try:
        warmed = _on_every_thread(started, threading.get_ident)  # four threads, one run each, no error
        assert len(set(warmed)) == 4
        served = {started.tpool.submit(threading.get_ident).result() for _ in range(20)}
        assert served <= set(warmed)  # requests are served on the warmed threads
    finally:
        started.tpool.shutdown()


def test_a_warm_that_fails_or_hangs_is_reported_and_the_others_finish():
    started = _pool_worker(3)
    calls = iter(["fail", "hang", "ok"])
    lock = threading.Lock()

    def warm():
        with lock:
            call = next(calls)
        if call == "fail":
            raise RuntimeError("no database")
        if call == "hang":
            time.sleep(1.5)

    try:
        begun = time.monotonic()
        errors = warm_threads(started, warm, timeout=0.3)
        assert time.monotonic() - begun < 1.4  # did not wait for the hanging run
        assert sorted(type(error).__name__ for error in errors) == ["NoneType", "RuntimeError", "TimeoutError"]
    finally:
        started.tpool.shutdown()


@pytest.mark.django_db
def test_a_process_opens_each_threads_database_connection_before_it_serves(monkeypatch):
    from django.db import connection

    monkeypatch.setenv("GC_FREEZE", "false")
    started = _pool_worker(3)
    try:
        gunicorn_config.post_worker_init(started)
        assert _on_every_thread(started, lambda: connection.connection is not None) == [True] * 3
        assert re.fullmatch(r"Worker 1: 3 threads opened their database connections in \d+ ms", started.lines[-1])
    finally:
        _on_every_thread(started, lambda: connection.close())
        started.tpool.shutdown()


@pytest.mark.django_db
def test_threads_are_left_to_connect_on_their_first_requests_when_turned_off_or_the_database_is_down(monkeypatch):
    from django.db import OperationalError, connection

    monkeypatch.setenv("GC_FREEZE", "false")
    monkeypatch.setenv("GUNICORN_WARM_THREADS", "false")
    started = _pool_worker(2)
    try:
        gunicorn_config.post_worker_init(started)
        assert _on_every_thread(started, lambda: connection.connection is None) == [True, True]

        monkeypatch.setenv("GUNICORN_WARM_THREADS", "true")

        def down():
            raise OperationalError("connection refused")

        monkeypatch.setattr("core.startup.warm_database_connection", down)
        gunicorn_config.post_worker_init(started)  # logs, and the process goes on to serve
        assert re.fullmatch(
            r"Worker 1: 2 of 2 threads could not open their database connections in \d+ ms \(they will on their"
            r" first requests\): OperationalError\('connection refused'\)",
            started.lines[-1],
        )
    finally:
        _on_every_thread(started, lambda: connection.close())
        started.tpool.shutdown()


def test_a_served_answer_is_dated_to_the_second_it_was_sent(serve):
    port = serve(workers=1, threads=2)
    (connection,) = _connect(port, 1)
    _ask(connection, "/?http_date")
    assert _answer(connection)[1] == b"formatted once a second"  # the serving process's own http_date

    def dated() -> float:
        _ask(connection)
        head, _ = _answer(connection)
        (date,) = re.findall(rb"\r\nDate: ([^\r]+)", head)
        return email.utils.parsedate_to_datetime(date.decode()).timestamp()

    first = dated()
    assert time.time() - 2 <= first <= time.time()
    time.sleep(1.1)
    assert dated() >= first + 1  # formatted again in a later second, not kept from the first


def test_a_settled_configuration_reads_each_setting_once_and_answers_as_gunicorns_own(monkeypatch):
    plain, settled = Config(), Config()
    for cfg in (plain, settled):
        cfg.set("threads", 8)
        cfg.set("forwarded_allow_ips", "10.0.0.1,10.0.0.2")
    settled.__class__ = SettledConfig
    for name in plain.settings:
        assert getattr(settled, name) == getattr(plain, name), name
    assert settled.address == plain.address  # properties
    assert settled.worker_class_str == plain.worker_class_str

    counted = Config()
    counted.__class__ = SettledConfig
    reads = []
    monkeypatch.setattr(counted.settings["keepalive"], "get", lambda: reads.append(1) or 7)
    assert [counted.keepalive for _ in range(3)] == [7, 7, 7]
    assert len(reads) == 1  # read once, then kept

    settled.set("threads", 3)
    assert settled.threads == 3  # set() forgets the kept value
    with pytest.raises(AttributeError):
        settled.no_such_setting  # noqa: B018


def test_a_property_that_fails_is_asked_again_not_kept():
    class Odd(SettledConfig):
        @property
        def threads(self):
            raise AttributeError("not yet")  # Python then asks __getattr__, which reads the setting

    odd = Config()
    odd.__class__ = Odd
    assert odd.threads == 1
    assert "threads" not in vars(odd)


def test_the_date_header_is_formatted_once_a_second(monkeypatch):
    formatted = []

    def format_date(timestamp):
        formatted.append(timestamp)
        return f"at {timestamp}"

    now = [100.2]
    monkeypatch.setattr(gunicorn_worker.time, "time", lambda: now[0])
    http_date = http_date_once_a_second(format_date)
    assert http_date() == "at 100"
    now[0] = 100.9
    assert http_date() == "at 100"
    assert formatted == [100]
    now[0] = 101.0
    assert http_date() == "at 101"
    assert http_date(5.5) == "at 5.5"  # a time asked for is formatted as asked
    assert formatted == [100, 101, 5.5]


@pytest.mark.parametrize("part", [0.0, 0.5, 0.999998, 0.9999994, 0.9999996, 0.99999999])
def test_the_date_header_reads_as_gunicorns_own_at_any_time_of_a_second(monkeypatch, part):
    http_date = http_date_once_a_second(gunicorn.util.http_date)
    now = [1_764_558_000 + part]
    monkeypatch.setattr(time, "time", lambda: now[0])  # read by gunicorn's util and by the wrapper
    assert http_date() == gunicorn.util.http_date()
    now[0] = 1_764_558_000.25  # the second's text as kept, whichever time of the second formatted it
    assert http_date() == gunicorn.util.http_date()
    assert http_date(1_000_000_000.7) == gunicorn.util.http_date(1_000_000_000.7)


def test_a_process_settles_its_gunicorn_configuration_and_dates_before_it_serves(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "false")  # this test's process is pytest's
    monkeypatch.setenv("GUNICORN_WARM_THREADS", "false")
    original = gunicorn.util.http_date
    process = _started_worker()
    process.cfg = Config()
    gunicorn_config.post_worker_init(process)
    assert type(process.cfg) is SettledConfig
    assert gunicorn.util.http_date.__wrapped__ is original
    wrapped = gunicorn.util.http_date
    stand_in = _started_worker()
    stand_in.cfg = SimpleNamespace(workers=1, threads=1)
    gunicorn_config.post_worker_init(stand_in)
    assert type(stand_in.cfg) is SimpleNamespace  # no configuration of gunicorn's: left as it is
    assert gunicorn.util.http_date is wrapped  # not wrapped twice
