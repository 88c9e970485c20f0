"""gunicorn's threaded worker (gthread), taking new connections least-loaded first.

Every gthread process polls the shared listening socket and accepts whenever it is readable, so a
burst of connections (a load balancer or nginx opening its keep-alive pool, a client with 16
connections) goes mostly to whichever process wakes first: measured here, 11 of wrk's 16 kept-alive
connections in one of five processes and one each in three others. A kept-alive connection stays in
the process that accepted it, so that process's threads share one interpreter lock (one core)
between most of the load while the other processes idle: throughput is one process's, and the
requests queued behind the lock make the latency's tail.

``BalancedThreadWorker`` stops polling the listening socket for a while after each accept, longer
the more connections it already holds: ``ACCEPT_DELAY_PER_CONNECTION`` seconds for each connection
beyond the first. A process holding none or one accepts at once, so a lightly loaded server answers
a new connection as before; a busy one leaves new connections in the kernel's queue for the others
to take. The connections a process holds already are never moved: kept-alive clients are never cut
off.

config/gunicorn.py makes every gthread worker of the service this class (also when the command line
says ``--worker-class gthread``).
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

#: Seconds a process waits after an accept, per connection it holds beyond the first, before it
#: accepts again. Long enough for the other processes to wake and take their share of a burst (on a
#: busy 2-core machine a process can wait a few milliseconds for a core), short enough that a new
#: connection to a server whose processes all hold a few kept-alive connections waits little.
ACCEPT_DELAY_PER_CONNECTION = 0.005


class BalancedThreadWorker(ThreadWorker):
    _last_accept = float("-inf")

    def _accept_pause(self) -> float:
        """Seconds left before this process may accept again (0 or less: it may now)."""
        held_beyond_first = self.nr_conns - 1
        if held_beyond_first <= 0:
            return 0.0
        return self._last_accept + held_beyond_first * ACCEPT_DELAY_PER_CONNECTION - time.monotonic()

    def accept(self, listener):
        super().accept(listener)
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
