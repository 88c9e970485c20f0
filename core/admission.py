"""Requests of one web process run their application code a few at a time, in the order they came.

A gthread process serves each connection's request on its own pool thread, and every thread shares
the process's one interpreter lock. Under load three or four requests of a process interleave at each
database or Redis round trip: each one's own 2-3 ms of work is spread over the time of all of them,
and the process being preempted by the kernel holds up all of them at once, so the latency's tail
runs to three times its mean (docs/PERFORMANCE.md, twenty-seventh round). An ``AdmissionGate`` lets
``slots`` requests run at once (one, by default, where the server has at least as many processes as
cores: config/gunicorn.py) and queues the others in arrival order, so a request that has its turn
runs without the others' work in between, and the next one starts when it ends or gives its turn
away.

The gate never makes a request wait without end:

- a request that waited ``wait`` seconds for its turn runs anyway, without a slot (``overflows``
  counts them; ``admitted`` logs a warning at most once a minute per process), so a slow request (a
  long back-office page, a database that stopped answering) holds each of the others up by at most
  that;
- a request gives its slot to the next one while it waits on something outside the service, a
  provider's answer or another request's outcome (``waiting_outside``), and takes its turn again
  after; not inside a database transaction, whose locks another request of the process could be
  waiting for;
- only the application's call is gated: gunicorn reads the request line and headers before it, a
  body of up to ``preread`` bytes with a ``Content-Length`` is read whole before the turn is taken
  (a client sending it slowly holds up no other request), and the answer is written (a streamed one
  iterated) after it.

How long a request waited for its turn is in its WSGI environ (``WAIT_KEY``, seconds), which the
request log writes as ``turn_wait_ms``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between two warnings of a process about requests that ran without waiting for their turn.
OVERFLOW_WARNING_INTERVAL = 60.0

#: The WSGI environ key under which ``admitted`` leaves the seconds a request waited for its turn.
WAIT_KEY = "admission.wait_seconds"

_held = threading.local()  # .gate: the gate whose slot this thread holds, if any


class AdmissionGate:
    """``slots`` turns, handed over in the order they were asked for."""

    _new_turn = threading.Lock  # a waiting request's own lock, released by give_back to hand it the turn

    def __init__(self, slots: int, *, wait: float) -> None:
        if slots < 1:
            raise ValueError("an admission gate needs at least one slot")
        self.slots = slots
        self.wait = wait
        self.overflows = 0
        self._free = slots
        self._waiting: collections.deque[threading.Lock] = collections.deque()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Takes a slot for this thread: at once if one is free and nobody is waiting, else after the
        requests ahead. False when none came within ``wait`` seconds: the caller goes on without one.
        A thread that holds one already keeps it and takes no second."""
        if getattr(_held, "gate", None) is self:
            return True
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                _held.gate = self
                return True
            turn = self._new_turn()
            turn.acquire()
            self._waiting.append(turn)
        try:
            handed = turn.acquire(timeout=self.wait)
        except BaseException:  # interrupted while waiting: leave the queue, pass on a turn handed over
            with self._lock:
                try:
                    self._waiting.remove(turn)
                except ValueError:
                    self._hand_over()
            raise
        if handed:
            _held.gate = self  # handed over by give_back
            return True
        with self._lock:
            try:
                self._waiting.remove(turn)
            except ValueError:  # handed over just as the wait ran out: the slot is this thread's
                _held.gate = self
                return True
            self.overflows += 1
        return False

    def give_back(self) -> None:
        """Hands this thread's slot to the first request waiting, if any; nothing if it holds none."""
        if getattr(_held, "gate", None) is not self:
            return
        _held.gate = None
        with self._lock:
            self._hand_over()

    def _hand_over(self) -> None:
        # Under self._lock: a slot given up goes to the first request waiting, else back to the free ones.
        if self._waiting:
            self._waiting.popleft().release()
        else:
            self._free += 1

    def holds(self) -> bool:
        """Whether this thread holds one of the gate's slots."""
        return getattr(_held, "gate", None) is self


WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def admitted(application: WSGIApplication, gate: AdmissionGate, *, preread: int) -> WSGIApplication:
    """``application`` called with one of ``gate``'s slots held (or after waiting its bound), its body
    read first when it has a ``Content-Length`` of at most ``preread`` bytes."""
    warned = [time.monotonic() - OVERFLOW_WARNING_INTERVAL, 0]  # when last, overflows counted then
    warning = threading.Lock()

    def gated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _read_body_first(environ, preread)
        asked = time.monotonic()
        took = gate.take()
        try:
            environ[WAIT_KEY] = time.monotonic() - asked
            if not took:
                with warning:
                    now = time.monotonic()
                    if now - warned[0] >= OVERFLOW_WARNING_INTERVAL:
                        log.warning(
                            "%s request(s) waited %g ms for their turn and ran without one (GUNICORN_ACTIVE_WAIT_MS)",
                            gate.overflows - warned[1],
                            gate.wait * 1000,
                        )
                        warned[:] = [now, gate.overflows]
            return application(environ, start_response)
        finally:
            gate.give_back()

    gated.admission_gate = gate  # type: ignore[attr-defined]
    gated.__wrapped__ = application  # type: ignore[attr-defined]
    return gated


def _read_body_first(environ: dict[str, Any], preread: int) -> None:
    """The body, when its ``Content-Length`` says at most ``preread`` bytes, read now into memory, so
    the application reads it from there while holding its turn. A longer one is left to the
    application to read as it comes (a body without a length, chunked, reads as empty in Django).
    A client that declares a body and does not send it holds this thread, as one that stops halfway
    through its headers does: a buffering proxy in front (deploy/nginx.conf) bounds both."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # the application answers a malformed length as it would have
    if 0 < length <= preread and "wsgi.input" in environ:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))


def _in_transaction() -> bool:
    from django.conf import settings
    from django.db import connections

    if not settings.configured:
        return False  # not a Django application: no transaction of Django's
    return any(connection.in_atomic_block for connection in connections.all(initialized_only=True))


@contextlib.contextmanager
def waiting_outside() -> Iterator[None]:
    """Around a wait on something outside the service (a provider's answer, another request's
    outcome): this thread's slot goes to the next request meanwhile, and it takes its turn again
    after. Nothing changes for a thread that holds no slot (no gate, the outbox worker, a request
    that ran without one) or that is inside a database transaction. The turn is taken back only on
    the thread that gave it (a generator suspended inside the block and closed elsewhere takes none)."""
    gate: AdmissionGate | None = getattr(_held, "gate", None)
    if gate is None or _in_transaction():
        yield
        return
    thread = threading.get_ident()
    gate.give_back()
    try:
        yield
    finally:
        if threading.get_ident() == thread:
            gate.take()
