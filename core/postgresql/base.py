"""Django's PostgreSQL backend with client-side bounds on every wait for the server.

PostgreSQL's own ``statement_timeout`` and ``lock_timeout`` end slow statements, but only a server that
answers can apply them. A frozen server (stopped processes, a network path that drops packets while the
kernel still acknowledges them) would leave a request waiting for ever. This backend bounds, on the
client, both

- connecting (``connect_timeout`` in seconds, fractions allowed: libpq and psycopg round anything under
  2 s up to 2 s), and
- every round trip on an open connection (``query_timeout``): past it the connection is closed and the
  statement fails with ``OperationalError``, which the service answers as 503 ``database_unavailable``.

Both come from ``DATABASES["default"]["OPTIONS"]`` (config/settings/base.py reads them from the
environment); 0 or absent means no client-side bound.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from django.db.backends.postgresql import base as postgresql
from psycopg import adapters, errors, waiting
from psycopg.adapt import AdaptersMap, Loader
from psycopg.conninfo import conninfo_attempts, make_conninfo
from psycopg.pq import Format

logger = logging.getLogger(__name__)

#: How often psycopg wakes up while waiting (to notice Ctrl-C); its own default.
_WAIT_INTERVAL = 0.1


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose waits on the server end after ``query_timeout`` seconds."""

    query_timeout: float | None = None
    #: Called when the server did not answer in time (the wrapper stops reconnecting for a moment).
    on_timeout: Any = None
    #: ``time.monotonic()`` when the server last answered a round trip on this connection.
    answered_at: float = float("-inf")

    @classmethod
    def connect_bounded(
        cls, *, client_connect_timeout: float | None, client_query_timeout: float | None, **kwargs: Any
    ) -> BoundedConnection:
        if not client_connect_timeout:
            connection = cls.connect(**kwargs)
        else:
            connection = cls._connect_within(client_connect_timeout, **kwargs)
        connection.query_timeout = client_query_timeout or None
        return connection

    @classmethod
    def _connect_within(
        cls,
        timeout: float,
        *,
        autocommit: bool = False,
        prepare_threshold: int | None = 5,
        context: Any = None,
        row_factory: Any = None,
        cursor_factory: Any = None,
        **kwargs: Any,
    ) -> BoundedConnection:
        # psycopg's own Connection.connect() (psycopg 3.3), with a float deadline instead of its 2 s minimum.
        params = cls._get_connection_params("", **kwargs)
        failures: list[psycopg.Error] = []
        for attempt in conninfo_attempts(params):
            try:
                connection = waiting.wait_conn(
                    cls._connect_gen(make_conninfo("", **attempt)), interval=_WAIT_INTERVAL, timeout=timeout
                )
            except errors._WaitTimeout:
                failures.append(errors.ConnectionTimeout(f"connection timeout expired after {timeout:g} s"))
            except psycopg.Error as error:
                failures.append(error)
            else:
                break
        else:
            raise failures[-1].with_traceback(None)
        connection._autocommit = bool(autocommit)
        if row_factory:
            connection.row_factory = row_factory
        if cursor_factory:
            connection.cursor_factory = cursor_factory
        if context:
            connection._adapters = AdaptersMap(context.adapters)
        connection.prepare_threshold = prepare_threshold
        return connection

    @contextlib.contextmanager
    def query_timeout_set(self, seconds: float | None) -> Iterator[None]:
        """``query_timeout`` is ``seconds`` (None: no bound) for the block, then what it was."""
        previous = self.query_timeout
        self.query_timeout = seconds
        try:
            yield
        finally:
            self.query_timeout = previous

    def wait(self, gen, interval: float = _WAIT_INTERVAL, timeout: float | None = None):
        if timeout is None:
            timeout = self.query_timeout
        try:
            result = super().wait(gen, interval=interval, timeout=timeout)
        except errors._WaitTimeout:
            # The server did not answer in time; the protocol state is unknown, so the connection is
            # dropped (Django reconnects on the next request).
            logger.warning("Database did not answer within %s s; closing the connection", timeout)
            self.pgconn.finish()
            if self.on_timeout is not None:
                self.on_timeout()
            raise psycopg.OperationalError(f"the database did not answer within {timeout:g} s") from None
        self.answered_at = time.monotonic()
        return result


try:  # psycopg's C implementation (psycopg[binary]), when installed
    from psycopg_binary._psycopg import TimestamptzLoader as _CTimestamptzLoader  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the pure Python psycopg
    _CTimestamptzLoader = None


@functools.cache
def _tz_loader(zone: Any) -> type:
    """Django's timestamptz loader (psycopg_any.BaseTzLoader: the value in Django's time zone, which
    Django sets as the session's) on psycopg's C parser instead of its Python one: Django subclasses
    the Python class, which parses every timestamp of every row in Python (6.9 us a value against
    2.5 us here; a page of 50 messages holds about 150 of them)."""

    class TzLoader(Loader):
        timezone = zone

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._parse = _CTimestamptzLoader(oid, context).load  # the C class cannot be subclassed

        def load(self, data: Any) -> Any:
            return self._parse(data).replace(tzinfo=zone)

    return TzLoader


class _BoundedPsycopg:
    """Stands in for the psycopg module in Django's wrapper so that it connects with BoundedConnection."""

    def __init__(self, wrapper: DatabaseWrapper) -> None:
        self._wrapper = wrapper

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)

    def connect(self, **params: Any) -> BoundedConnection:
        return BoundedConnection.connect_bounded(
            client_connect_timeout=self._wrapper.client_connect_timeout,
            client_query_timeout=self._wrapper.client_query_timeout,
            **params,
        )


class DatabaseWrapper(postgresql.DatabaseWrapper):
    #: OPTIONS this backend reads itself; never passed to libpq.
    CLIENT_OPTIONS = ("client_connect_timeout", "client_query_timeout", "client_health_check_timeout")
    #: Seconds a reused connection's ``SELECT 1`` may take before the connection is replaced (default).
    HEALTH_CHECK_TIMEOUT = 0.5
    #: A connection the server answered on less than this many seconds ago skips Django's per-request
    #: ``SELECT 1`` (as pgbouncer's ``server_check_delay`` does): under load every request would
    #: otherwise pay a round trip to learn what the previous request just proved.
    HEALTH_CHECK_IDLE_SECONDS = 0.25
    #: A persistent connection is retired after a random share of ``CONN_MAX_AGE`` between this and
    #: the whole of it (see ``connect``).
    MIN_AGE_SHARE = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.settings_dict.get("OPTIONS", {})
        self.client_connect_timeout = float(options.get("client_connect_timeout") or 0) or None
        self.client_query_timeout = float(options.get("client_query_timeout") or 0) or None
        self.client_health_check_timeout = float(
            options.get("client_health_check_timeout") or self.HEALTH_CHECK_TIMEOUT
        )
        # Django reaches the driver through this attribute; the wrapper bounds its connect.
        self.Database = _BoundedPsycopg(self)  # type: ignore[assignment]
        self._unreachable_until = 0.0

    def get_new_connection(self, conn_params: dict[str, Any]) -> BoundedConnection:
        # After a failed connect or an unanswered query, further connects from this thread fail at once
        # for a moment: a request that meets a dead database then spends one bound on it, not one per
        # query or per error-handling step that touches the database again.
        if time.monotonic() < self._unreachable_until:
            raise psycopg.OperationalError("the database did not answer moments ago; not reconnecting yet")
        try:
            connection = super().get_new_connection(conn_params)
        except psycopg.OperationalError:
            self._mark_unreachable()
            raise
        connection.on_timeout = self._mark_unreachable
        return connection

    def connect(self) -> None:
        super().connect()
        # Django retires a persistent connection CONN_MAX_AGE seconds after opening it (at the end of the
        # first request after that). A web process opens its threads' connections within moments of each
        # other, at start or in its first busy second, so they would all be retired, and the next
        # request of every thread would open a new one, in the same second of every period: each
        # such request waits for a connection and a cold server process (about 15 ms on an idle
        # machine, 100-200 ms on a loaded one). Each connection's age limit is drawn between
        # MIN_AGE_SHARE and the whole of CONN_MAX_AGE, so the reconnections spread over the period and
        # none lives longer than configured.
        max_age = self.settings_dict["CONN_MAX_AGE"]
        if self.close_at is not None and max_age:
            self.close_at -= max_age * random.uniform(0.0, 1.0 - self.MIN_AGE_SHARE)

    def _mark_unreachable(self) -> None:
        self._unreachable_until = time.monotonic() + (self.client_connect_timeout or 0)

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        for name in self.CLIENT_OPTIONS:
            params.pop(name, None)
        context = params.get("context")
        if context is not None and _CTimestamptzLoader is not None:
            loader = context.adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)
            zone = getattr(loader, "timezone", None)
            if zone is not None:
                # A map of this connection's own: Django's template is shared by the whole process.
                params["context"] = context = AdaptersMap(context.adapters)
                context.register_loader("timestamptz", _tz_loader(zone))
        return params

    def close_if_health_check_failed(self) -> None:
        connection = self.connection
        if (
            connection is not None
            and self.health_check_enabled  # type: ignore[attr-defined]
            and not self.health_check_done  # type: ignore[has-type]
            and not self.errors_occurred
            and time.monotonic() - connection.answered_at < self.HEALTH_CHECK_IDLE_SECONDS
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def is_usable(self) -> bool:
        # Django's health check of a reused connection (CONN_HEALTH_CHECKS), once per request. A frozen
        # server fails it after client_health_check_timeout (0.5 s) rather than the full query bound, so that a request
        # that then reconnects still ends within query/connect bounds it documents.
        connection = self.connection
        if connection is None:
            return False
        if connection.closed:
            return False
        bound = connection.query_timeout
        with connection.query_timeout_set(min(bound, self.client_health_check_timeout) if bound else bound):
            return super().is_usable()
