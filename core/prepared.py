"""The request hot paths' statements as server-side prepared statements (PostgreSQL).

Django's PostgreSQL backend binds parameters on the client: psycopg splits the statement text at its
``%s`` and quotes every value into it (for a statement over 4 KB or with more than 50 parameters, such
as the inbound webhook's, on every execution), and the server parses and plans the text each time. A
statement run through ``prepared_cursor()`` is instead written with PostgreSQL's own ``$n``
placeholders (converted once per statement text), its parameters are sent apart from it, and psycopg
prepares it on the connection the first time: later executions on that connection skip parsing and,
once PostgreSQL settles on a generic plan, planning. Measured on the inbound webhook's statement
(docs/PERFORMANCE.md): about half the client's CPU and a third of the server's.

Statements given here name the columns they return (never ``SELECT *`` or a top-level ``RETURNING
*``): after a migration changes a table, PostgreSQL re-plans a prepared statement by itself, but
refuses to run one whose result columns changed (a column added to a ``SELECT *``, or a returned
column's type changed); the cursor then prepares it again (see ``_PreparedCursor.execute``).

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
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from psycopg.pq import Format

_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)
_TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid


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
        try:
            return super().execute(numbered(query), params, **kwargs)
        except psycopg.errors.FeatureNotSupported as error:
            # Another connection changed the type of a column this statement returns (a migration while
            # the service runs). Outside a transaction the statement is prepared again and retried;
            # inside one, the transaction is lost, and its rollback makes psycopg forget every prepared
            # statement of the connection, so the next run prepares afresh.
            if "cached plan must not change result type" not in str(error) or not self.connection.autocommit:
                raise
            super().execute("DEALLOCATE ALL", prepare=False)  # psycopg forgets its statements with them
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
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each read through django.db.connection costs a lookup
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    # As Django's own cursor(): the connection's health check (CONN_HEALTH_CHECKS) first, as this may
    # be the request's first statement, then a connection.
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = _cursor_of(db.connection)
    # As Django's create_cursor(): timestamps in the connection's time zone, if it changed since connecting.
    loader = raw.adapters.get_loader(_TIMESTAMPTZ, Format.TEXT)
    if getattr(loader, "timezone", None) != db.timezone:
        raw = _PreparedCursor(db.connection)
        register_tzloader(db.timezone, raw)
    # Not closed on the way out (Django's wrapper would close it on __exit__): the connection keeps it.
    yield _PreparedDebugWrapper(raw, db) if db.queries_logged else CursorWrapper(raw, db)


def _cursor_of(pg_connection: psycopg.Connection) -> _PreparedCursor:
    """The connection's one prepared-statement cursor. psycopg chooses how to send each parameter type
    once per cursor, so a cursor per statement (as Django makes) would look them all up again every
    time; a connection is used by one thread at a time, and so is its cursor."""
    cursor = getattr(pg_connection, "_service_prepared_cursor", None)
    if cursor is None or cursor.closed:
        cursor = _PreparedCursor(pg_connection)
        pg_connection._service_prepared_cursor = cursor  # type: ignore[attr-defined]
    return cursor
