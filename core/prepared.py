"""The request hot paths' statements as server-side prepared statements (PostgreSQL).

Django's PostgreSQL backend binds parameters on the client: psycopg splits the statement text at its
``%s`` and quotes every value into it (for a statement over 4 KB or with more than 50 parameters, such
as the inbound webhook's, on every execution), and the server parses and plans the text each time. A
statement run through ``prepared_cursor()`` is instead written with PostgreSQL's own ``$n``
placeholders (converted once per statement text), its parameters are sent apart from it, and it is
prepared on the connection the first time (by ``_PreparedCursor``, straight through libpq): later
executions on that connection skip parsing and, once PostgreSQL settles on a generic plan, planning.
Measured on the inbound webhook's statement (docs/PERFORMANCE.md): about half the client's CPU and a
third of the server's.

A generic plan is kept until the table is next analyzed, so one made while a table was new or small
outlives the table's growth: a statement must find its rows by an index on any size of table
(messaging.services' ``_record_success_by_key_sql``), or run where each execution is planned for its
parameters (``custom_plans()``, the outbox worker's, whose statements each serve a batch).

Statements given here name the columns they return (never ``SELECT *`` or a top-level ``RETURNING
*``): after a migration changes a table, PostgreSQL re-plans a prepared statement by itself, but
refuses to run one whose result columns changed (a column added to a ``SELECT *``, or a returned
column's type changed); the cursor then prepares it again (see ``_PreparedCursor._execute_directly``).

Preparing is on by default; ``DB_PREPARED_STATEMENTS=false`` turns it off (for a connection pooler
in transaction mode that does not track prepared statements, pgbouncer before 1.21): the statements
then still go with server-side parameters, unprepared. See docs/OPERATIONS.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
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
from psycopg import abc as psycopg_abc
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.generators import execute as _execute  # psycopg's C implementation with psycopg[binary]
from psycopg.pq import Format
from psycopg.pq.abc import PGresult

M = TypeVar("M", bound=Model)

_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)
_TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid
_IDLE = pq.TransactionStatus.IDLE
_CONNECTION_OK = pq.ConnStatus.OK
_PIPELINE_OFF = pq.PipelineStatus.OFF
_RESULT_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
#: The most statements a connection keeps prepared by ``_PreparedCursor`` (psycopg's own default bound
#: for its cache): one per statement text and set of parameter types, the oldest closed beyond it.
MAX_PREPARED_STATEMENTS = 100
#: The names of the statements prepared directly (``_service_N``), unique in the process.
_statement_numbers = itertools.count(1)


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


@dataclasses.dataclass
class _ConnectionStatements:
    """What ``_PreparedCursor`` prepared on one connection."""

    #: Statement names by text and parameter types, oldest first.
    names: dict[tuple[str, tuple[int, ...]], bytes] = dataclasses.field(default_factory=dict)
    #: Statements whose plan went stale, to close before the next is prepared.
    stale: list[bytes] = dataclasses.field(default_factory=list)


@functools.lru_cache(maxsize=256)
def _placeholder_count(sql: str) -> int:
    return sum(1 for match in _PLACEHOLDER.finditer(sql) if match.group(1) == "s")


class _PreparedCursor(psycopg.RawCursor):
    """Takes ``%s`` statements (as every other cursor of the project) and runs them prepared.
    Each connection keeps one (psycopg picks each parameter type's dumper once per cursor, so a cursor
    per statement, as Django makes, would look them up again every time); a connection serves one
    thread at a time, and ``in_use`` keeps a nested ``prepared_cursor()`` off the shared one.

    A statement goes straight to the connection's libpq handle (``Connection.pgconn``), after the
    BEGIN psycopg's cursor would send first (autocommit off and no transaction open yet). It is
    prepared once per connection under a name of this module's (``_service_N``, apart from psycopg's
    ``_pg3_N``), its parameters dumped and its rows loaded by psycopg's own adapters (a
    ``psycopg.adapt.Transformer`` of this cursor), and it waits through the connection's ``wait()``,
    so the backend's client-side ``query_timeout`` bounds it as it bounds every other round trip.
    psycopg's cursor machinery around a prepared statement (its prepared-statement cache, its result
    bookkeeping) cost about 90 k instructions per statement under callgrind, 8% of a send's Python
    for its four statements (docs/PERFORMANCE.md, twelfth round). In pipeline mode, or on a closed
    connection or cursor, the statement goes through psycopg's cursor instead, unprepared.

    Of a statement run directly, the cursor keeps the rows (``fetchone``, ``fetchmany``,
    ``fetchall``, iteration) and ``rowcount``; not ``description`` or ``statusmessage``, which no
    caller reads."""

    in_use = False
    #: The rows of the last statement run directly (None: it went through psycopg's cursor).
    _direct_rows: list[tuple[Any, ...]] | None = None
    _direct_position = 0
    _direct_rowcount = -1
    _direct_transformer: psycopg_abc.Transformer | None = None

    def execute(  # type: ignore[override]  # a %s statement's text only, as every cursor of Django's takes
        self, query: str, params: Sequence[Any] | None = None, **kwargs: Any
    ) -> _PreparedCursor:
        self._direct_rows = None
        if not kwargs and self._runs_directly():
            self._execute_directly(query, params or ())
            return self
        # Unprepared: psycopg deallocates every statement of the connection (``DEALLOCATE ALL``) after a
        # rollback once it has prepared one of its own, and would take this cursor's with them.
        kwargs.setdefault("prepare", False)
        return super().execute(numbered(query), params, **kwargs)

    def _runs_directly(self) -> bool:
        """Whether nothing but the statement itself is to be done: an open connection out of pipeline
        mode (psycopg's cursor raises its own errors for a closed one)."""
        pgconn = self.connection.pgconn
        return pgconn.status == _CONNECTION_OK and pgconn.pipeline_status == _PIPELINE_OFF and not self.closed

    def _execute_directly(self, query: str, params: Sequence[Any]) -> None:
        placeholders = _placeholder_count(query)
        if len(params) != placeholders:  # as psycopg's cursor checks: the server would drop the connection
            raise psycopg.ProgrammingError(
                f"the query has {placeholders} placeholders but {len(params)} parameters were passed"
            )
        transformer = self._direct_transformer
        if transformer is None:
            transformer = self._direct_transformer = Transformer(self)
        values = transformer.dump_sequence(params, _auto_formats(len(params)))
        connection = self.connection
        with connection.lock:
            if not connection.autocommit and connection.pgconn.transaction_status == _IDLE:
                self._begin()  # as psycopg's cursor would, before the transaction's first statement
            try:
                result = self._run_directly(query, values, transformer)
            except (psycopg.errors.FeatureNotSupported, psycopg.errors.InvalidSqlStatementName) as error:
                # The statement's plan is stale (another connection's migration changed the type of a
                # column it returns) or the statement is gone (DEALLOCATE ALL, DISCARD ALL). Outside a
                # transaction it is prepared again under a new name and run again. Inside one, the
                # transaction is lost: the error goes up as the database being unavailable for a moment
                # (503 with Retry-After; a provider delivers the webhook again), and the next run
                # prepares afresh.
                if not _must_prepare_again(error):
                    raise
                prepared = self._prepared()
                if isinstance(error, psycopg.errors.InvalidSqlStatementName):
                    prepared.names.clear()  # DEALLOCATE ALL or DISCARD ALL took every one of them
                elif (stale := prepared.names.pop(_statement_key(query, transformer), None)) is not None:
                    prepared.stale.append(stale)  # closed before the next is prepared: this transaction may be lost
                if connection.pgconn.transaction_status != _IDLE:
                    raise psycopg.OperationalError(f"a prepared statement must be prepared again: {error}") from error
                result = self._run_directly(query, values, transformer)
        transformer.set_pgresult(result)
        self._direct_rows = transformer.load_rows(0, result.ntuples, tuple)
        self._direct_position = 0
        command_tuples = result.command_tuples
        self._direct_rowcount = command_tuples if command_tuples is not None else -1

    def _run_directly(self, query: str, values: Sequence[Any], transformer: psycopg_abc.Transformer) -> PGresult:
        connection = self.connection
        pgconn = connection.pgconn
        if connection.prepare_threshold is None:  # DB_PREPARED_STATEMENTS=false: parameters apart, unprepared
            text = numbered(query).encode(connection.info.encoding)
            pgconn.send_query_params(text, values, transformer.types, transformer.formats)
            return self._answer()
        prepared = self._prepared()
        statements = prepared.names
        key = _statement_key(query, transformer)
        name = statements.get(key)
        if name is None:
            while prepared.stale:
                self._deallocate(prepared.stale.pop())
            while len(statements) >= MAX_PREPARED_STATEMENTS:
                self._deallocate(statements.pop(next(iter(statements))))  # the oldest
            name = b"_service_%d" % next(_statement_numbers)
            text = numbered(query).encode(connection.info.encoding)
            pgconn.send_prepare(name, text, param_types=transformer.types)
            self._answer()
            statements[key] = name
        pgconn.send_query_prepared(name, values, param_formats=transformer.formats)
        return self._answer()

    def _begin(self) -> None:
        """psycopg's BEGIN for this connection: its isolation level, read-only and deferrable settings."""
        connection = self.connection
        parts = ["BEGIN"]
        if connection.isolation_level is not None:
            parts.append("ISOLATION LEVEL " + psycopg.IsolationLevel(connection.isolation_level).name.replace("_", " "))
        if connection.read_only is not None:
            parts.append("READ ONLY" if connection.read_only else "READ WRITE")
        if connection.deferrable is not None:
            parts.append("DEFERRABLE" if connection.deferrable else "NOT DEFERRABLE")
        connection.pgconn.send_query(" ".join(parts).encode())
        self._answer()

    def _deallocate(self, name: bytes) -> None:
        """Deallocates a statement of this cursor's, as psycopg evicts its own: by the protocol's Close,
        which is no error for a statement already gone and leaves a transaction as it was (libpq 17
        and later; psycopg[binary] brings its own), else ``DEALLOCATE``."""
        pgconn = self.connection.pgconn
        if psycopg.capabilities.has_send_close_prepared():
            pgconn.send_close_prepared(name)
        else:  # pragma: no cover - psycopg's Python implementation on an older libpq
            pgconn.send_query(b"DEALLOCATE " + name)
        self._answer()

    def _prepared(self) -> _ConnectionStatements:
        connection = self.connection
        prepared = getattr(connection, "_service_prepared", None)
        if prepared is None:
            prepared = connection._service_prepared = _ConnectionStatements()  # type: ignore[attr-defined]
        return prepared

    def _answer(self) -> PGresult:
        """The server's answer to what was just sent, waited for through the connection's ``wait()``
        (bounded by its query timeout), its error raised as psycopg raises it."""
        connection = self.connection
        result = connection.wait(_execute(connection.pgconn))[-1]
        if result.status in _RESULT_OK:
            return result
        if result.status == _FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
        raise psycopg.InternalError(f"unexpected result from a prepared statement: {pq.ExecStatus(result.status).name}")

    def fetchone(self) -> Any:
        rows = self._direct_rows
        if rows is None:
            return super().fetchone()
        if self._direct_position < len(rows):
            self._direct_position += 1
            return rows[self._direct_position - 1]
        return None

    def fetchmany(self, size: int = 0) -> list[Any]:
        rows = self._direct_rows
        if rows is None:
            return super().fetchmany(size)
        start = self._direct_position
        self._direct_position = min(start + (size or self.arraysize), len(rows))
        return rows[start : self._direct_position]

    def fetchall(self) -> list[Any]:
        rows = self._direct_rows
        if rows is None:
            return super().fetchall()
        start, self._direct_position = self._direct_position, len(rows)
        return rows[start:]

    def __next__(self) -> Any:
        if self._direct_rows is None:
            return super().__next__()
        row = self.fetchone()
        if row is None:
            raise StopIteration("no more records to return")
        return row

    @property
    def rowcount(self) -> int:
        return self._direct_rowcount if self._direct_rows is not None else super().rowcount

    @property
    def description(self) -> list[psycopg.Column] | None:
        if self._direct_rows is not None:
            raise psycopg.NotSupportedError("a statement run directly keeps its rows and rowcount, not its description")
        return super().description


def _statement_key(query: str, transformer: psycopg_abc.Transformer) -> tuple[str, tuple[int, ...]]:
    """Which prepared statement runs ``query`` with the parameters ``transformer`` dumped last: as
    psycopg keys its own, by text and parameter types (a NULL sent untyped prepares another)."""
    return query, tuple(transformer.types or ())


def _must_prepare_again(error: psycopg.Error) -> bool:
    """A statement gone, or one whose result columns changed: PostgreSQL's plan cache refuses it in
    ``RevalidateCachedQuery`` ("cached plan must not change result type", in any server language)."""
    return isinstance(error, psycopg.errors.InvalidSqlStatementName) or (
        error.diag.source_function == "RevalidateCachedQuery" or "cached plan must not change result type" in str(error)
    )


@functools.cache
def _auto_formats(count: int) -> list[PyFormat]:
    return [PyFormat.AUTO] * count


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
    return _instances(model, _fetch(sql, params))


def prepared_models_and_value(model: type[M], sql: str, params: Sequence[Any]) -> tuple[list[M], Any]:
    """``prepared_models`` for a statement that selects ``model_columns(model)`` (with an ``alias`` or
    without), then one more column, which holds the same value on every row, and that returns at least
    one row: a row whose primary key is NULL stands for no instance (the statement's outer join found
    none). The instances and that value, read in one round trip and one snapshot (an inbox page and
    its total)."""
    rows = _fetch(sql, params)
    if not rows:
        raise ValueError("prepared_models_and_value: the statement must return at least one row")
    value = rows[0][-1]
    pk = model._meta.concrete_fields.index(model._meta.pk)
    return _instances(model, [row[:-1] for row in rows if row[pk] is not None]), value


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _instances(model: type[M], rows: Sequence[Sequence[Any]]) -> list[M]:
    db = connections[DEFAULT_DB_ALIAS]
    names, converters = _row_plan(db, model)
    build = _builder(model)
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


def model_columns(model: type[Model], *, alias: str = "") -> str:
    """The quoted columns of ``model``'s concrete fields, in their order, for ``prepared_models``;
    each qualified by ``alias`` (a subquery's name) when one is given."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote(str(field.column)) for field in model._meta.concrete_fields)


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
