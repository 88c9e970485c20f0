"""The request hot paths' statements as server-side prepared statements (PostgreSQL).

Django's PostgreSQL backend binds parameters on the client: psycopg splits the statement text at its
``%s`` and quotes every value into it (for a statement over 4 KB or with more than 50 parameters, such
as the inbound webhook's, on every execution), and the server parses and plans the text each time. A
statement run through ``prepared_cursor()`` is instead written with PostgreSQL's own ``$n``
placeholders (converted once per statement text), its parameters are sent apart from it, and psycopg
prepares it on the connection the first time: later executions on that connection skip parsing and,
once PostgreSQL settles on a generic plan, planning. Measured on the inbound webhook's statement
(docs/PERFORMANCE.md): about half the client's CPU and a third of the server's.

Statements given here must name the columns they return (never ``SELECT *`` or a top-level
``RETURNING *``): after a migration changes a table, PostgreSQL re-plans a prepared statement but
refuses one whose result columns would change.

Preparing is on by default; ``DB_PREPARED_STATEMENTS=false`` turns it off (for a connection pooler
in transaction mode that does not track prepared statements, pgbouncer before 1.21): the statements
then still go with server-side parameters, unprepared. See docs/OPERATIONS.md.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from psycopg.pq import Format

_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``sql`` with its ``%s`` placeholders as ``$1``, ``$2``, ... and ``%%`` as ``%``."""
    counter = iter(range(1, 10**6))

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "s":
            return f"${next(counter)}"
        if match.group(1) == "%":
            return "%"
        raise ValueError(f"unsupported placeholder %{match.group(1)} in a prepared statement")

    return _PLACEHOLDER.sub(replace, sql)


class _PreparedCursor(psycopg.RawCursor):
    """Takes ``%s`` statements (as every other cursor of the project) and asks psycopg to prepare them."""

    def execute(  # type: ignore[override]  # a %s statement's text only, as every cursor of Django's takes
        self, query: str, params: Sequence[Any] | None = None, **kwargs: Any
    ) -> _PreparedCursor:
        kwargs.setdefault("prepare", True)
        return super().execute(numbered(query), params, **kwargs)


class _PreparedDebugWrapper(CursorDebugWrapper):
    """Logs a prepared statement as Django logs its own with server-side parameters: the ``%s`` text
    with the parameters quoted into it (psycopg keeps no such text for a statement it did not compose)."""

    @contextlib.contextmanager
    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        if use_last_executed_query and sql is not None and not many:
            with contextlib.suppress(psycopg.DataError):
                sql = self.db.ops.compose_sql(sql, params)
        with super().debug_sql(sql, params, use_last_executed_query=False, many=many):
            yield


@contextlib.contextmanager
def prepared_cursor() -> Iterator[CursorWrapper]:
    """A cursor of the default connection whose statements are prepared (on another database than
    PostgreSQL, its usual cursor). It is wrapped as Django's own are: database errors become
    ``django.db`` errors, execute wrappers and query logging see its statements, and a broken
    transaction is refused."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    # As Django's own cursor(): the connection's health check (CONN_HEALTH_CHECKS) first, as this may
    # be the request's first statement, then a connection.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = _PreparedCursor(connection.connection)
    # As Django's create_cursor(): timestamps in the connection's time zone, if it changed since connecting.
    loader = connection.connection.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.TEXT)
    if getattr(loader, "timezone", None) != connection.timezone:
        register_tzloader(connection.timezone, raw)
    cursor = _PreparedDebugWrapper(raw, connection) if connection.queries_logged else CursorWrapper(raw, connection)
    with cursor:
        yield cursor
