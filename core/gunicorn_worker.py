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

config/gunicorn.py makes every gthread worker of the service this class (also when the command line
says ``--worker-class gthread``, unless ``GUNICORN_BALANCED_ACCEPT=false``) and sets
``keepalive_linger`` from ``GUNICORN_KEEPALIVE_LINGER_MS`` (0 turns the waiting off).
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable
from concurrent import futures

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


class BalancedThreadWorker(ThreadWorker):
    _last_accept = float("-inf")
    keepalive_linger = KEEPALIVE_LINGER

    def _serving(self) -> int:
        """Connections with a request in the thread pool: not idle kept-alive, not waiting for data."""
        return self.nr_conns - len(self.keepalived_conns) - len(self.pending_conns)

    def _accept_pause(self) -> float:
        """Seconds left before this process may accept again (0 or less: it may now)."""
        beyond_first = self._serving() - 1
        if beyond_first <= 0:
            return 0.0
        pause = min(beyond_first * ACCEPT_DELAY_PER_CONNECTION, MAX_ACCEPT_PAUSE)
        return self._last_accept + pause - time.monotonic()

    def accept(self, listener):
        held = self.nr_conns
        super().accept(listener)
        if self.nr_conns == held:
            return  # another process took the connection (gunicorn ignores EAGAIN): no pause
        self._last_accept = time.monotonic()
        if self._accept_pause() > 0:
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled):
        # The run loop enables accepting whenever the process is below worker_connections.
        if enabled and self.alive and self._accept_pause() > 0:
            return
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
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            # Readable also when the client closed the connection: the next handle() sees the end and closes it.
            readable = bool(poller.poll(self.keepalive_linger * 1000))
        except (OSError, ValueError):
            self.log.debug("Waiting for a kept-alive connection's next request failed", exc_info=True)
            return False  # gthread's own path takes the connection over, and meets whatever is wrong with it
        # Another connection's request may have queued for a thread meanwhile (every thread busy): this
        # one then goes back to the main thread's poller, which queues it behind that request, as
        # gthread would have, rather than going ahead of it.
        return readable and self._serving() <= self.cfg.threads


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
