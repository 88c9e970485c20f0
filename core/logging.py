"""Structured logs: one JSON object per line (python-json-logger), with the context of the work in hand.

Every line logged while a request is served carries its ``request_id`` (taken from the client's or the
proxy's ``X-Request-ID`` when it is well-formed, made up otherwise, and returned in the answer's
``X-Request-ID``); every line logged while the outbox worker delivers a message carries its
``message_id`` and ``attempt``. The context lives in context variables, so it follows the thread (or
task) doing the work and nothing has to be passed along.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)

#: What a client may send as X-Request-ID: short, printable, no spaces (it ends up in every log line).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The client's request id if it is acceptable, else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Adds ``fields`` to every log line written inside the block (nested blocks add to the outer)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record, where the JSON formatter picks it up."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True
