"""gunicorn's threaded worker (gthread), taking new connections least-loaded first.

Every gthread process polls the shared listening socket and accepts whenever it is readable, so a
burst of connections (a load generator's, or a proxy's after a restart) goes mostly to whichever
process wakes first: measured here, 11 of wrk's 16 kept-alive connections in one of five processes
and one each in three others. A kept-alive connection stays in the process that accepted it, so
that process's threads share one interpreter lock (one core) between most of the load while the
other processes idle: throughput is one process's, and the requests queued behind the lock make the
latency's tail.

``BalancedThreadWorker`` stops polling the listening socket for a while after each connection it
accepts, longer the more requests it is already serving: ``ACCEPT_DELAY_PER_CONNECTION`` seconds for
each connection being served beyond the first, at most ``MAX_ACCEPT_PAUSE``. Idle kept-alive
connections do not count, so a process holding many of them (a proxy's pool) still accepts at once.
A process serving none or one accepts at once, so a lightly loaded server answers a new connection
as before; a busy one leaves new connections in the kernel's queue for the others to take. The
connections a process holds already are never moved: kept-alive clients are never cut off.

It also keeps answering a kept-alive connection on the thread that answered it. gthread hands every
request over twice: the main thread polls the kept-alive sockets and passes a readable one to a pool
thread, and the pool thread passes it back to the main thread after the answer, which registers it
with its poller again. Each handover is a wake-up of the other thread, which must then take the
interpreter lock from whichever thread is running Python: on a busy machine a request waits for the
main thread twice. After an answer, ``BalancedThreadWorker`` waits up to ``keepalive_linger`` seconds
(``KEEPALIVE_LINGER``) on the pool thread for the client's next request and answers it there; only a
connection that stays quiet that long goes back to the main thread's poller. It waits only while the
process has an idle thread (fewer connections in hand than threads), and a next request that arrives
while another connection's request is queued for a thread goes back to the main thread's poller
behind it, as it would have without the wait: no request is overtaken, and one that queues during a
wait waits at most ``keepalive_linger`` longer than it would have.

With ``active_processes`` set (N > 0), only the N youngest processes of the server take new
connections at once, each up to one connection in hand per thread; the others stand by. A standby
process takes a connection only once it has seen the listening socket's queue hold connections for
``STANDBY_DELAY`` (every active process is full, or too busy to accept), and then takes what is
queued until the queue is empty.

Where each process runs one request at a time (core/admission.py), every process that serves
connections keeps its own code and data warm in the cores' caches and switches in and out at every
database round trip; a few processes, enough to keep the cores busy while one waits on the database,
did the same work with less of the cores' time on one machine (docs/PERFORMANCE.md, twenty-eighth
round), and served less than every process on another (thirtieth round): it is off by default. A
process looks at its rank among its siblings (the children of the same gunicorn, youngest first,
from /proc) at most once a second. The youngest, because a process gunicorn starts is a new one: the
process that replaces one that exited, or the new processes of a reload (HUP) while the old ones
finish their requests, take new connections at once. Where /proc cannot tell (config/gunicorn.py
checks before a process serves), every process is active.

Two things gunicorn does for every request cost more Python than they need to, and a process that
serves drops them (``settle``): ``SettledConfig`` keeps each setting gunicorn reads (its parser's
limits, the proxy headers, the hooks: about 22 reads a request) as a plain attribute after its first
read, where ``Config.__getattr__`` looked each one up again after a failed attribute lookup (1.7 us
a read on a 2-core machine whose loop of ten million additions takes 1.07 s); and the answer's
``Date`` header is formatted once a second (``http_date_once_a_second``) instead of once a request
(6.7 us; both one-off ``timeit`` figures). Together: 6.7% fewer instructions for the web process per
inbound message, 9.8% per health check (callgrind, docs/PERFORMANCE.md, thirty-first round).
Neither changes what gunicorn sends or a setting it reads: a process's settings do not change while
it serves (a reload starts new processes), and the ``Date`` text is gunicorn's own for the same
time.

config/gunicorn.py makes every gthread worker of the service this class (also when the command line
says ``--worker-class gthread``, unless ``GUNICORN_BALANCED_ACCEPT=false``) and sets
``keepalive_linger`` from ``GUNICORN_KEEPALIVE_LINGER_MS`` (0 turns the waiting off) and
``active_processes`` from ``GUNICORN_ACTIVE_PROCESSES``.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import gunicorn.util
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

#: Seconds a process waits after an accept, per connection it is serving beyond the first, before it
#: accepts again. Long enough for the other processes to wake and take their share of a burst (on a
#: busy 2-core machine a process can wait a few milliseconds for a core).
ACCEPT_DELAY_PER_CONNECTION = 0.005
#: The longest pause, however busy the process: a new connection never waits longer than this for a
#: process that could take it.
MAX_ACCEPT_PAUSE = 0.025
#: Seconds a pool thread waits on a kept-alive connection it has just answered for the next request,
#: before handing it back to the main thread's poller. A client with its next request ready (a proxy's
#: pooled connection under load, a load generator) sends it within a few milliseconds.
KEEPALIVE_LINGER = 0.005
#: Seconds a new connection waits in the listening socket's queue before a standby process takes it:
#: an active process with room takes one within a few milliseconds, a busy one within
#: ``MAX_ACCEPT_PAUSE``, unless its main thread is itself waiting for the interpreter (up to the switch
#: interval, 100 ms by default: a standby process then now and then takes a connection an active one
#: would have).
STANDBY_DELAY = 0.1
#: Seconds between two looks of a process at its rank among the server's processes.
RANK_INTERVAL = 1.0


class SettledConfig(Config):
    """gunicorn's ``Config``, each setting kept as a plain attribute of the object once read: the next
    read is an attribute lookup rather than ``Config.__getattr__``. ``set`` forgets the kept value."""

    def __getattr__(self, name: str):
        value = super().__getattr__(name)  # AttributeError for a name that is no setting
        if not isinstance(getattr(type(self), name, None), property):  # a property that raised: not kept
            object.__setattr__(self, name, value)  # past Config.__setattr__, which refuses settings' names
        return value

    def set(self, name, value):
        super().set(name, value)
        self.__dict__.pop(name, None)


#: The part of a second from which ``email.utils.formatdate``, rounding the time to the microsecond,
#: names the next second: such a time is formatted as it is, not from the kept text.
_ROUNDS_UP = 0.999999


def http_date_once_a_second(format_date: Callable[..., str]) -> Callable[..., str]:
    """``format_date`` (gunicorn's ``util.http_date``: the ``Date`` header's text for a time, now by
    default) for the current time, formatted once for each second and kept until the next: the header
    names whole seconds. Any other time is formatted as asked."""
    last: tuple[int | None, str] = (None, "")

    def http_date(timestamp: float | None = None) -> str:
        nonlocal last
        if timestamp is not None:
            return format_date(timestamp)
        now = time.time()
        second = int(now)
        if now - second >= _ROUNDS_UP:
            return format_date(now)
        kept, text = last  # one read: another thread may replace it meanwhile
        if kept != second:
            text = format_date(second)
            last = (second, text)
        return text

    http_date.__wrapped__ = format_date  # type: ignore[attr-defined]
    http_date.formatted_once_a_second = True  # type: ignore[attr-defined]
    return http_date


def settle(worker) -> None:
    """Before a process serves: its gunicorn settings kept once read (``SettledConfig``) and the
    ``Date`` header formatted once a second. Nothing changes for a configuration that is not
    gunicorn's own ``Config`` (a test's stand-in), and nothing is wrapped twice."""
    cfg = getattr(worker, "cfg", None)
    if type(cfg) is Config:
        cfg.__class__ = SettledConfig
    if not getattr(gunicorn.util.http_date, "formatted_once_a_second", False):
        gunicorn.util.http_date = http_date_once_a_second(gunicorn.util.http_date)


def process_rank(pid: int, parent: int, proc: Path = Path("/proc")) -> int | None:
    """How many of ``parent``'s other children started after ``pid`` (by start time, then id): 0 for
    the youngest. None where /proc cannot tell (not Linux, no such process)."""
    try:
        children = (proc / str(parent) / "task" / str(parent) / "children").read_text().split()
    except OSError:
        return None
    started = {}
    for child in children:
        try:
            fields = (proc / child / "stat").read_text().rsplit(")", 1)[1].split()
            started[int(child)] = (int(fields[19]), int(child))  # field 22 of proc(5): the start time
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or unreadable: not counted
    own = started.get(pid)
    if own is None:
        return None
    return sum(1 for key in started.values() if key > own)


class BalancedThreadWorker(ThreadWorker):
    _last_accept = float("-inf")
    keepalive_linger = KEEPALIVE_LINGER
    #: How many of the youngest processes take new connections at once (0: all of them).
    active_processes = 0
    _standby = False
    _rank_read = float("-inf")
    #: When a standby process first saw a connection waiting (None: it saw none, or took them all).
    _waiting_since: float | None = None

    def standing_by(self) -> bool:
        """Whether this process takes new connections only once they have waited ``STANDBY_DELAY``."""
        if self.active_processes <= 0:
            return False
        now = time.monotonic()
        if now - self._rank_read >= RANK_INTERVAL:
            self._rank_read = now
            rank = process_rank(os.getpid(), self.ppid)
            self._standby = rank is not None and rank >= self.active_processes
        return self._standby

    def _connections_queued(self) -> bool:
        """Whether a new connection waits in any of the listening sockets' queues."""
        return any(_readable(listener) for listener in self.sockets)

    def _serving(self) -> int:
        """Connections with a request in the thread pool: not idle kept-alive, not waiting for data."""
        return self.nr_conns - len(self.keepalived_conns) - len(self.pending_conns)

    def _accept_pause(self) -> float:
        """Seconds left before this process may accept again (0 or less: it may now)."""
        if self._waiting_since is not None:  # a standby process leaving a connection to the active ones
            left = self._waiting_since + STANDBY_DELAY - time.monotonic()
            if left > 0:
                return left
        if self.active_processes > 0 and self._serving() >= self.cfg.threads:
            # A request in hand for each thread: a standby process takes the next connection. Each
            # connection this process lets go wakes its run loop, which looks again.
            return MAX_ACCEPT_PAUSE
        beyond_first = self._serving() - 1
        if beyond_first <= 0:
            return 0.0
        pause = min(beyond_first * ACCEPT_DELAY_PER_CONNECTION, MAX_ACCEPT_PAUSE)
        return self._last_accept + pause - time.monotonic()

    def accept(self, listener):
        if self.standing_by():
            now = time.monotonic()
            if self._waiting_since is None or now - self._waiting_since > 2 * STANDBY_DELAY:
                # First seen, or seen long ago and taken by an active process since: the active
                # processes' to take, for a while.
                self._waiting_since = now
            if now - self._waiting_since < STANDBY_DELAY:
                self.set_accept_enabled(False)
                return
        if self._accept_pause() > 0:  # its connections became busy since it last listened (a thread each)
            self.set_accept_enabled(False)
            return
        held = self.nr_conns
        super().accept(listener)
        if self._waiting_since is not None:
            if self._connections_queued():
                self._waiting_since = time.monotonic() - STANDBY_DELAY  # more waited: taken as they come
            else:
                self._waiting_since = None  # the queue is empty: the next connection is the active ones' again
        if self.nr_conns == held:
            return  # another process took the connection (gunicorn ignores EAGAIN): no pause
        self._last_accept = time.monotonic()
        if self._accept_pause() > 0:
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled):
        # The run loop enables accepting whenever the process is below worker_connections.
        if enabled and self.alive and self._accept_pause() > 0:
            return
        # A standby process's wait is over: if the active processes took what was queued, the next
        # connection to come is theirs again.
        if enabled and not self._accepting and self._waiting_since is not None and not self._connections_queued():
            self._waiting_since = None
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        # Wake when the pause ends, so the run loop listens again without waiting for other events.
        if not self._accepting and self.alive:
            pause = self._accept_pause()
            if pause > 0:
                timeout = min(timeout, pause)
        super().wait_for_and_dispatch_events(timeout)

    def handle(self, conn):
        # On a pool thread: gthread's handling of one request, then of each next one the client sends
        # while this thread waits (``keepalive_linger``). True: keep the connection (the main thread
        # polls it again); False: close it; gthread's _DEFER: a new connection sent nothing yet.
        result = super().handle(conn)
        while result is True and self._next_request_soon(conn):
            result = super().handle(conn)
        return result

    def _next_request_soon(self, conn) -> bool:
        """Whether the next request on ``conn``, just answered and kept alive, arrived or arrives within
        ``keepalive_linger`` seconds, waited for only while another thread is free for other requests."""
        if self.keepalive_linger <= 0 or not self.alive or conn.is_http2:
            return False
        if self._serving() >= self.cfg.threads:
            return False  # every thread has a connection in hand: free this one for the others
        if conn.parser.unreader.buf.getvalue():
            return True  # read already, with the previous request's body (gthread's finish_request too)
        pending = getattr(conn.sock, "pending", None)  # TLS: bytes decrypted but not yet read
        if pending is not None and pending():
            return True
        try:
            # Readable also when the client closed the connection: the next handle() sees the end and closes it.
            readable = _poll_in(conn.sock, self.keepalive_linger)
        except (OSError, ValueError):
            self.log.debug("Waiting for a kept-alive connection's next request failed", exc_info=True)
            return False  # gthread's own path takes the connection over, and meets whatever is wrong with it
        # Another connection's request may have queued for a thread meanwhile (every thread busy): this
        # one then goes back to the main thread's poller, which queues it behind that request, as
        # gthread would have, rather than going ahead of it.
        return readable and self._serving() <= self.cfg.threads


def _poll_in(sock, seconds: float) -> bool:
    """Whether ``sock`` is readable within ``seconds`` (raises what poll() raises)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(seconds * 1000))


def _readable(listener) -> bool:
    """Whether a connection waits in ``listener``'s queue, without waiting."""
    try:
        return _poll_in(listener, 0)
    except (OSError, ValueError):
        return False


def warm_threads(worker, warm: Callable[[], object], *, timeout: float = 10.0) -> list[BaseException | None]:
    """Runs ``warm()`` once on each of the worker's ``threads`` pool threads, before the process serves,
    and returns what each run raised (None: nothing). The pool makes its threads on demand, a new
    one for each task that finds none idle, so each task here waits for the others before it ends and
    no thread takes two. A run that has not ended after ``timeout`` seconds counts as a
    ``TimeoutError`` and the process goes on to serve (a thread left cold warms on its first request,
    as it would have without this)."""
    count = worker.cfg.threads
    together = threading.Barrier(count, timeout=timeout)

    def task() -> None:
        try:
            warm()
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):  # another run timed out: go on
                together.wait()

    tasks = [worker.tpool.submit(task) for _ in range(count)]
    futures.wait(tasks, timeout=timeout + 1)
    return [task.exception(timeout=0) if task.done() else TimeoutError("still warming") for task in tasks]
