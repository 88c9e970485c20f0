"""core.logging.JsonFormatter writes what python-json-logger's own formatter writes, line for line."""

import copy
import logging
import sys
from datetime import datetime

import pytest
from django.conf import settings
from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

from core.logging import JsonFormatter

CONFIGURED = {key: value for key, value in settings.LOGGING["formatters"]["json"].items() if key != "()"}


def _record(msg="%s %s %s", args=("POST", "message-sms", 201), *, exc_info=None, **extra):
    record = logging.getLogger("requests").makeRecord(
        "requests", logging.INFO, __file__, 10, msg, args, exc_info, func="f", extra=extra or None
    )
    record.request_id = "40443c5fd1ca48d29a0bd4117fa9b179"  # as core.logging.ContextFilter adds it
    return record


def _exception_info():
    try:
        raise ValueError("boom")
    except ValueError:
        return sys.exc_info()


RECORDS = {
    "request line": lambda: _record(method="POST", status=201, duration_ms=6.0, api_key_prefix=None),
    "no arguments": lambda: _record("plain text", ()),
    "non-ascii and quotes": lambda: _record('é "quoted" \n line', (), note="ünïcode"),
    "renamed extra": lambda: _record(levelname_extra=1, name_of="x"),
    "underscored extra is left out": lambda: _record(_private=1, public=2),
    "exception": lambda: _record("failed", (), exc_info=_exception_info()),
    "dict message": lambda: _record({"event": "x", "n": 1}, ()),
    "object values": lambda: _record(when=datetime(2026, 1, 1), items=[1, {"a": None}]),
}


def test_the_settings_use_this_formatter():
    assert settings.LOGGING["formatters"]["json"]["()"] == "core.logging.JsonFormatter"


@pytest.mark.parametrize("kind", list(RECORDS))
@pytest.mark.parametrize(
    "options",
    [CONFIGURED, {}, {**CONFIGURED, "static_fields": {"service": "ms"}}, {**CONFIGURED, "timestamp": True}],
    ids=["configured", "library defaults", "static fields", "timestamp"],
)
def test_each_line_is_the_librarys(kind, options):
    ours, library = JsonFormatter(**options), LibraryJsonFormatter(**options)
    record = RECORDS[kind]()

    assert ours.format(copy.copy(record)) == library.format(copy.copy(record))


def test_the_time_is_formatted_again_each_second():
    formatter = JsonFormatter(**CONFIGURED)
    record = _record()
    first = formatter.formatTime(record, formatter.datefmt)
    record.created += 1

    assert formatter.formatTime(record, formatter.datefmt) != first
    assert formatter.formatTime(record, formatter.datefmt) == LibraryJsonFormatter(**CONFIGURED).formatTime(
        record, formatter.datefmt
    )


def test_log_line_names_its_caller_as_logging_does(caplog):
    from core.logging import log_line

    logger = logging.getLogger("requests")
    with caplog.at_level(logging.INFO, logger="requests"):
        logger.info("%s and %s", "one", "two", extra={"route": "r"})
        log_line(logger, logging.INFO, "%s and %s", "one", "two", extra={"route": "r"})
        expected_line = sys._getframe().f_lineno - 1

    standard, ours = caplog.records
    assert ours.getMessage() == standard.getMessage() == "one and two"
    assert (ours.pathname, ours.funcName, ours.route) == (standard.pathname, standard.funcName, standard.route)
    assert (standard.lineno, ours.lineno) == (expected_line - 1, expected_line)


def test_log_line_writes_nothing_below_the_loggers_level(caplog):
    from core.logging import log_line

    with caplog.at_level(logging.WARNING, logger="requests"):
        log_line(logging.getLogger("requests"), logging.INFO, "quiet", extra={})

    assert not caplog.records
