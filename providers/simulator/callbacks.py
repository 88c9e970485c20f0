"""Calling the service back: a scheduler thread holds callbacks until they are due, a small pool of
threads posts them, and a failed post (connection error or non-2xx answer) is retried with backoff."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.error import HTTPError, URLError
from urllib.request import ProxyHandler, Request, build_opener

from providers.simulator.config import Behaviour
from providers.simulator.state import Stats

logger = logging.getLogger(__name__)

#: Seconds between a failed post and the next try: 0.5, 1, 2, 4, ... capped.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0

# Environment proxies (http_proxy) must not capture calls to the service.
_OPENER = build_opener(ProxyHandler({}))


@dataclass(frozen=True)
class Callback:
    """One POST to the service. ``sign`` makes the signature headers at delivery time (SendGrid's
    signed timestamp must be fresh when the service reads it)."""

    label: str
    url: str
    body: bytes
    content_type: str
    sign: Callable[[bytes], dict[str, str]]
    attempt: int = 1


@dataclass(frozen=True)
class Delivery:
    label: str
    status: int | None
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def as_json(self) -> dict:
        return {"label": self.label, "status": self.status, "attempts": self.attempts, "error": self.error}


def plan(callbacks: list[Callback], behaviour: Behaviour, rng: random.Random) -> list[tuple[float, Callback, bool]]:
    """(delay seconds, callback, is_duplicate) for one message's status callbacks, in posting order
    as sent: spread over the callback delay, reversed for an out-of-order message, some twice."""
    if not callbacks:
        return []
    low, high = behaviour.callback_delay_ms
    last = rng.uniform(low, high) / 1000
    times = [last * (index + 1) / len(callbacks) for index in range(len(callbacks))]
    if len(callbacks) > 1 and rng.random() < behaviour.out_of_order_rate:
        times.reverse()
    planned = [(delay, callback, False) for delay, callback in zip(times, callbacks, strict=True)]
    for delay, callback, _ in list(planned):
        if rng.random() < behaviour.duplicate_rate:
            planned.append((delay + rng.uniform(0.05, 0.5), callback, True))
    return sorted(planned, key=lambda item: item[0])


def post(callback: Callback, *, timeout: float) -> Delivery:
    """One attempt. A 2xx answer is delivered; anything else is reported with its status or error."""
    headers = {"Content-Type": callback.content_type, "User-Agent": "provider-simulator"}
    headers.update(callback.sign(callback.body))
    request = Request(callback.url, data=callback.body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            return Delivery(callback.label, response.status, callback.attempt)
    except HTTPError as error:
        detail = error.read(500).decode("utf-8", errors="replace")
        return Delivery(callback.label, error.code, callback.attempt, f"HTTP {error.code}: {detail}")
    except (URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return Delivery(callback.label, None, callback.attempt, f"{type(error).__name__}: {reason}")


def backoff(attempt: int) -> float:
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


class CallbackDispatcher:
    def __init__(self, *, stats: Stats, attempts: int, timeout: float, workers: int) -> None:
        self._stats = stats
        self._attempts = attempts
        self._timeout = timeout
        self._heap: list[tuple[float, int, Callback]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._stopping = False
        self._paused = False
        self._in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-callback")
        self._thread = threading.Thread(target=self._run, name="sim-callback-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def set_paused(self, paused: bool) -> None:
        """While paused, due callbacks wait; they are posted as soon as the pause ends."""
        with self._condition:
            self._paused = paused
            self._condition.notify_all()

    def schedule(self, callback: Callback, delay: float, *, duplicate: bool = False) -> None:
        self._stats.add("callbacks", "duplicates" if duplicate else "scheduled")
        self._push(callback, delay)

    def pending(self) -> int:
        """Callbacks not yet delivered or given up (waiting, or being posted)."""
        with self._condition:
            return len(self._heap) + self._in_flight

    def clear(self) -> None:
        with self._condition:
            self._heap.clear()

    def deliver_now(self, callback: Callback) -> Delivery:
        """Posts in the calling thread, retrying like scheduled callbacks; returns the last outcome."""
        while True:
            delivery = post(callback, timeout=self._timeout)
            if delivery.ok or callback.attempt >= self._attempts:
                self._stats.add("inbound", "posted" if delivery.ok else "failed")
                return delivery
            with self._condition:
                if self._condition.wait_for(lambda: self._stopping, timeout=backoff(callback.attempt)):
                    return delivery
            callback = replace(callback, attempt=callback.attempt + 1)

    def _push(self, callback: Callback, delay: float) -> None:
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._sequence), callback))
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and (self._paused or not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap and not self._paused else None
                    self._condition.wait(timeout=wait)
                if self._stopping:
                    return
                _, _, callback = heapq.heappop(self._heap)
                self._in_flight += 1
            try:
                self._pool.submit(self._deliver, callback)
            except RuntimeError:  # the pool is shutting down
                return

    def _deliver(self, callback: Callback) -> None:
        try:
            delivery = post(callback, timeout=self._timeout)
            if delivery.ok:
                self._stats.add("callbacks", "delivered")
            elif callback.attempt < self._attempts:
                self._stats.add("callbacks", "retries")
                logger.info(
                    "callback %s attempt %d failed (%s); retrying", callback.label, callback.attempt, delivery.error
                )
                self._push(replace(callback, attempt=callback.attempt + 1), backoff(callback.attempt))
            else:
                self._stats.add("callbacks", "failed")
                logger.warning(
                    "callback %s given up after %d attempts: %s", callback.label, callback.attempt, delivery.error
                )
        except Exception:  # a bug must not kill the pool thread silently
            logger.exception("callback %s crashed", callback.label)
            self._stats.add("callbacks", "failed")
        finally:
            with self._condition:
                self._in_flight -= 1
