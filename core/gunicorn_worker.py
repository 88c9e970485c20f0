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

config/gunicorn.py makes every gthread worker of the service this class (also when the command line
says ``--worker-class gthread``, unless ``GUNICORN_BALANCED_ACCEPT=false``).
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

#: Seconds a process waits after an accept, per connection it is serving beyond the first, before it
#: accepts again. Long enough for the other processes to wake and take their share of a burst (on a
#: busy 2-core machine a process can wait a few milliseconds for a core).
ACCEPT_DELAY_PER_CONNECTION = 0.005
#: The longest pause, however busy the process: a new connection never waits longer than this for a
#: process that could take it.
MAX_ACCEPT_PAUSE = 0.025


class BalancedThreadWorker(ThreadWorker):
    _last_accept = float("-inf")

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
