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
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pythonjsonlogger.json

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


def log_line(logger: logging.Logger, level: int, msg: str, *args: Any, extra: dict[str, Any]) -> None:
    """``logger.log(level, msg, *args, extra=extra)`` for a line written on every request: the record
    names the caller's file, line and function as logging's own ``findCaller`` would, read from the
    caller's frame instead of searched for up the stack."""
    if not logger.isEnabledFor(level):
        return
    caller = sys._getframe(1)
    code = caller.f_code
    logger.handle(
        logger.makeRecord(logger.name, level, code.co_filename, caller.f_lineno, msg, args, None, code.co_name, extra)
    )


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record, where the JSON formatter picks it up."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """python-json-logger's formatter, the same JSON line for line, with the usual record (a string
    message, no exception or stack, no static fields or defaults configured) built in one pass: a
    line per request is on every request's path. The time is formatted once per second (with a
    ``datefmt``, the text depends on nothing finer). Anything else goes through the library as it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = not (self.defaults or self.static_fields or self.timestamp or self.rename_fields_keep_missing)
        self._required = tuple((field, self._get_rename(field)) for field in self._required_fields)
        self._asctime = "asctime" in self._required_fields
        self._second: tuple[tuple[int, str] | None, str] = (None, "")

    def format(self, record: logging.LogRecord) -> str:
        if not self._lean or isinstance(record.msg, dict) or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()
        if self._asctime:
            record.asctime = self.formatTime(record, self.datefmt)
        attributes = record.__dict__
        data = {name: attributes.get(field) for field, name in self._required}
        skip, rename = self._skip_fields, self.rename_fields
        for key, value in attributes.items():
            if key not in skip and not key.startswith("_"):
                data[rename.get(key, key)] = value
        return self.serialize_log_record(self.process_log_record(data))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        if not datefmt:
            return super().formatTime(record, datefmt)
        key = (int(record.created), datefmt)
        cached, text = self._second  # one read: another thread may replace it meanwhile
        if cached != key:
            text = super().formatTime(record, datefmt)
            self._second = (key, text)
        return text
