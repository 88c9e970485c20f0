"""The request hot paths' statements as server-side prepared statements (PostgreSQL).

Django's PostgreSQL backend binds parameters on the client: psycopg splits the statement text at its
``%s`` and quotes every value into it (for a statement over 4 KB or with more than 50 parameters, such
as the inbound webhook's, on every execution), and the server parses and plans the text each time. A
statement run through ``prepared_cursor()`` is instead written with PostgreSQL's own ``$n``
placeholders (converted once per statement text), its parameters are sent apart from it, and psycopg
prepares it on the connection the first time: later executions on that connection skip parsing and,
once PostgreSQL settles on a generic plan, planning. Measured on the inbound webhook's statement
(docs/PERFORMANCE.md): about half the client's CPU and a third of the server's.

A generic plan is kept until the table is next analyzed, so one made while a table was new or small
outlives the table's growth: a statement must find its rows by an index on any size of table
(messaging.services' ``_record_success_by_key_sql``), or run where each execution is planned for its
parameters (``custom_plans()``, the outbox worker's, whose statements each serve a batch).

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
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Model, signals
from django.db.models.base import ModelState
from psycopg.pq import Format

M = TypeVar("M", bound=Model)

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
    """Takes ``%s`` statements (as every other cursor of the project) and asks psycopg to prepare them.
    Each connection keeps one (psycopg picks each parameter type's dumper once per cursor, so a cursor
    per statement, as Django makes, would look them up again every time); a connection serves one
    thread at a time, and ``in_use`` keeps a nested ``prepared_cursor()`` off the shared one."""

    in_use = False

    def execute(  # type: ignore[override]  # a %s statement's text only, as every cursor of Django's takes
        self, query: str, params: Sequence[Any] | None = None, **kwargs: Any
    ) -> _PreparedCursor:
        kwargs.setdefault("prepare", True)
        try:
            return super().execute(numbered(query), params, **kwargs)
        except psycopg.errors.FeatureNotSupported as error:
            # Another connection changed the type of a column this statement returns (a migration while
            # the service runs). Outside a transaction the statement is prepared again and retried.
            # Inside one, the transaction is lost: the error goes up as the database being unavailable
            # for a moment (503 with Retry-After; a provider delivers the webhook again), and the
            # rollback makes psycopg forget every prepared statement of the connection, so the next
            # run prepares afresh.
            if "cached plan must not change result type" not in str(error):
                raise
            if not self.connection.autocommit:
                raise psycopg.OperationalError(f"a prepared statement must be prepared again: {error}") from error
            super().execute("DEALLOCATE ALL", prepare=False)  # psycopg forgets its statements with them
            return super().execute(numbered(query), params, **kwargs)


class _PreparedCursorWrapper(CursorWrapper):
    """Django's ``CursorWrapper`` for a prepared cursor when queries are not logged: with no execute
    wrapper installed, the same checks and the same translation of driver errors into ``django.db``
    ones, that translation entered only when an error happens; with one (tests, instrumentation),
    Django's own path. Django's own goes
    through its execute-wrapper chain and the error wrapper's context manager for every statement
    and every fetch: callgrind counted 138 k instructions for a short prepared statement and its
    fetch through it, 120 k through this one, and a send's four statements 107 k fewer in all."""

    def execute(self, sql, params=None):
        db = self.db
        if db.execute_wrappers:
            return super().execute(sql, params)
        if not apps.ready and not apps.stored_app_configs:
            warnings.warn(self.APPS_NOT_READY_WARNING_MSG, category=RuntimeWarning, stacklevel=2)
        db.validate_no_broken_transaction()
        try:
            return self.cursor.execute(sql, params)
        except Exception:
            with db.wrap_database_errors:
                raise

    def fetchone(self):
        return self._fetch(self.cursor.fetchone)

    def fetchall(self):
        return self._fetch(self.cursor.fetchall)

    def _fetch(self, fetch):
        try:
            return fetch()
        except Exception:
            with self.db.wrap_database_errors:
                raise


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
    db.validate_thread_sharing()
    db.close_if_health_check_failed()
    db.ensure_connection()
    pg_connection = db.connection
    shared = getattr(pg_connection, "_service_prepared_cursor", None)
    # As Django's create_cursor(): timestamps in the connection's time zone, if it changed since connecting.
    loader = pg_connection.adapters.get_loader(_TIMESTAMPTZ, Format.TEXT)
    own_zone = getattr(loader, "timezone", None) == db.timezone
    if own_zone and shared is not None and not shared.closed and not shared.in_use:
        raw = shared
    else:
        # A cursor of its own: the first on this connection, a time zone changed since connecting, or
        # one prepared_cursor() used inside another (the statements stay prepared on the connection).
        raw = _PreparedCursor(pg_connection)
        if not own_zone:
            register_tzloader(db.timezone, raw)
        elif shared is None or shared.closed:
            pg_connection._service_prepared_cursor = raw
    raw.in_use = True
    try:
        # Not closed on the way out (Django's wrapper would close it on __exit__): the connection keeps it.
        yield _PreparedDebugWrapper(raw, db) if db.queries_logged else _PreparedCursorWrapper(raw, db)
    finally:
        raw.in_use = False


_CUSTOM_PLANS = "SET plan_cache_mode = force_custom_plan"


def _set_custom_plans(sender: Any = None, *, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "postgresql" and connection.alias == DEFAULT_DB_ALIAS:
        with connection.cursor() as cursor:
            cursor.execute(_CUSTOM_PLANS)


@contextlib.contextmanager
def custom_plans() -> Iterator[None]:
    """Every prepared statement of this process's default connection planned for its own parameters on
    each run, inside the block: on the connection open now and on any opened meanwhile; reset when the
    block ends. For a process whose statements each serve many rows (the outbox worker's batches), where
    a generic plan made while the table was new or small would be kept as it grows: a worker started
    with its queue filling as it drained it read 10.6 M rows for 6,000 messages sent. The planning is
    then paid once per statement, not once per row."""
    db = connections[DEFAULT_DB_ALIAS]
    connection_created.connect(_set_custom_plans, dispatch_uid=_CUSTOM_PLANS)
    try:
        if db.connection is not None:
            _set_custom_plans(connection=db)
        yield
    finally:
        connection_created.disconnect(dispatch_uid=_CUSTOM_PLANS)
        if db.vendor == "postgresql" and db.connection is not None and not db.needs_rollback:
            with contextlib.suppress(DatabaseError), db.cursor() as cursor:  # a broken one is dropped later
                cursor.execute("RESET plan_cache_mode")


def prepared_models(model: type[M], sql: str, params: Sequence[Any]) -> list[M]:
    """The rows of ``sql``, a prepared statement selecting ``model_columns(model)``, as ``model``
    instances, the same the ORM would make of them: each column goes through the converters the ORM
    applies to that field (Django reads ``jsonb`` as text and decodes it in ``JSONField.from_db_value``,
    for one), then builds the instance as ``Model.from_db`` does (``_builder``). On another database
    than PostgreSQL the statement runs on the usual cursor and the same applies."""
    db = connections[DEFAULT_DB_ALIAS]
    names, converters = _row_plan(db, model)
    build = _builder(model)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    instances = []
    for row in rows:
        if converters:
            values = list(row)
            for index, field_converters, expression in converters:
                value = values[index]
                for converter in field_converters:
                    value = converter(value, expression, db)
                values[index] = value
            row = values
        instances.append(build(db.alias, names, row))
    return instances


def _builder(model: type[M]) -> Callable[[str, tuple[str, ...], Sequence[Any]], M]:
    """``model.from_db`` for a row of every concrete field, without ``Model.__init__``'s per-field
    argument handling when nothing can tell the difference: no pre_init or post_init receiver for the
    model, and neither ``from_db`` nor ``__init__`` overridden. Otherwise ``from_db`` itself."""
    if (
        signals.pre_init.has_listeners(model)
        or signals.post_init.has_listeners(model)
        or model.from_db.__func__ is not Model.from_db.__func__  # type: ignore[attr-defined]
        or model.__init__ is not Model.__init__
    ):
        return model.from_db

    def build(alias: str, names: tuple[str, ...], row: Sequence[Any]) -> M:
        instance = model.__new__(model)
        state = ModelState()
        state.adding = False
        state.db = alias
        data = instance.__dict__
        data["_state"] = state
        data.update(zip(names, row, strict=True))
        return instance

    return build


def model_columns(model: type[Model]) -> str:
    """The quoted columns of ``model``'s concrete fields, in their order, for ``prepared_models``."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join(quote(str(field.column)) for field in model._meta.concrete_fields)


_Converters = tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]


def _row_plan(db: Any, model: type[Model]) -> tuple[tuple[str, ...], _Converters]:
    """What SQLCompiler.get_converters() finds for each column of ``model``, once per model and
    connection wrapper (Django's are per thread, and a backend converter may read its wrapper's state)."""
    plans = db.__dict__.setdefault("_service_row_plans", {})
    if model not in plans:
        plans[model] = _row_plan_for(db, model)
    return plans[model]


def _row_plan_for(db: Any, model: type[Model]) -> tuple[tuple[str, ...], _Converters]:
    converters = []
    for index, field in enumerate(model._meta.concrete_fields):
        expression = field.get_col(model._meta.db_table)
        found = tuple(db.ops.get_db_converters(expression)) + tuple(expression.get_db_converters(db))
        if found:
            converters.append((index, found, expression))
    return tuple(field.attname for field in model._meta.concrete_fields), tuple(converters)
