"""What the simulator remembers: counters for tests, and the answers given per idempotency token."""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

APIS = ("twilio", "sendgrid", "meta")
API_COUNTERS = ("requests", "sends", "replays", "errors")
CALLBACK_COUNTERS = ("scheduled", "delivered", "duplicates", "retries", "failed")


class Stats:
    """Thread-safe counters. ``sends`` counts messages accepted for the first time; ``replays`` counts
    requests answered from an idempotency token already seen; ``errors`` counts error answers and faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts = {api: dict.fromkeys(API_COUNTERS, 0) for api in APIS}
            self._counts["callbacks"] = dict.fromkeys(CALLBACK_COUNTERS, 0)
            self._counts["inbound"] = {"posted": 0, "failed": 0}

    def add(self, group: str, counter: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[group][counter] += amount

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {group: dict(counts) for group, counts in self._counts.items()}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    #: What was accepted, when this answer accepts a message (used to schedule its status callbacks).
    accepted: Any = field(default=None, compare=False)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


class IdempotencyLedger:
    """Token -> the answer first given. ``remember_or_replay`` decides atomically, so two concurrent
    requests with one token accept once. The oldest tokens are forgotten beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self._capacity = capacity

    def remember_or_replay(self, *, api: str, token: str | None, accept: Callable[[], Answer]) -> tuple[Answer, bool]:
        """(answer, replayed). Without a token every call accepts anew."""
        if not token:
            return accept(), False
        key = (api, token)
        with self._lock:
            earlier = self._answers.get(key)
            if earlier is not None:
                self._answers.move_to_end(key)
                return earlier, True
            answer = accept()
            self._answers[key] = answer
            while len(self._answers) > self._capacity:
                self._answers.popitem(last=False)
            return answer, False

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()


class MessageLog:
    """Counts of accepted messages per API and channel (for GET /stats' ``by_channel``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_channel: defaultdict[str, int] = defaultdict(int)

    def add(self, channel: str) -> None:
        with self._lock:
            self._by_channel[channel] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_channel)

    def reset(self) -> None:
        with self._lock:
            self._by_channel.clear()
