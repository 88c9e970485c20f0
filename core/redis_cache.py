"""Django's Redis cache backend, with one connection pool and one ``redis.Redis`` client per server and
options in a process, instead of a pool per thread and a client per cache operation.

- Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every ``get``, ``add`` or
  ``incr``, and redis-py's constructor fills a case-insensitive table of ~170 response callbacks each
  time: about 0.2 ms of CPU per operation, more than the round trip itself on a local Redis.
- Django's caches are per thread, and each cache object makes its own connection pool: a worker with
  256 delivery threads opened 256 connections at once when it started, and under load some of those
  handshakes timed out (the circuit breaker and the mock providers' memory then count as unavailable).

A ``redis.Redis`` and its ``ConnectionPool`` are safe to share between threads (a command takes a
connection from the pool and gives it back), and a pool starts afresh in a forked child; so every cache
object of the process with the same server and options uses the same pool and client, and connections
are opened only as commands need them (django-redis shares its pools the same way). Everything else is
Django's backend.

``LuaScript`` (the rate limit's counter, the mocks' remember-and-count) runs on lean connections of its
own beside each such pool, bounded the same way: see its docstring.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import hiredis
import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient
from redis._parsers.base import BaseParser

from core.sockets import IdleCheck

_shared: dict[tuple, tuple[Any, Any]] = {}  # (pool class, server, options) -> (pool, client)
_lock = threading.Lock()


class RedisCacheClient(DjangoRedisCacheClient):
    # Django's own (private) attributes used here, which django-stubs does not declare.
    _client: Callable[..., Any]
    _pools: dict[int, Any]
    _servers: list[str]
    _pool_class: Any
    _pool_options: dict[str, Any]
    _get_connection_pool_index: Callable[[bool], int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}  # by pool index, as Django's _pools

    def _shared(self, index: int) -> tuple[Any, Any]:
        key = (self._pool_class, self._servers[index], repr(sorted(self._pool_options.items())))
        with _lock:
            if key not in _shared:
                pool = self._pool_class.from_url(self._servers[index], **self._pool_options)
                _shared[key] = (pool, self._client(connection_pool=pool))
            return _shared[key]

    def _get_connection_pool(self, write):
        return self._for(self._get_connection_pool_index(write))[0]

    def get_client(self, key=None, *, write=False):
        return self._for(self._get_connection_pool_index(write))[1]

    def _for(self, index: int) -> tuple[Any, Any]:
        if index not in self._clients:
            self._pools[index], self._clients[index] = self._shared(index)
        return self._pools[index], self._clients[index]


class LuaScript:
    """A Lua script run by its SHA1 (loaded into Redis again when Redis answers NOSCRIPT, after a
    restart emptied its script cache): one atomic round trip for a few commands.

    It goes through ``_LeanConnections`` rather than redis-py's client: the rate limit and the mock
    providers run it once per send, and redis-py spent about 120 µs of CPU on a call (about 400 µs
    among an outbox worker's hundreds of threads) against 34 µs (114 µs) for a socket and hiredis's
    parser (docs/PERFORMANCE.md, fifth round). A pool the lean connections cannot honour (TLS, a
    credential provider, a client name, an unbounded pool: ``_lean_can_serve``) keeps redis-py's client."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._script: Any = None

    def __call__(self, client: Any, *, keys: list[Any], args: list[Any]) -> Any:
        lean = _lean_connections(client.connection_pool)
        if lean is not None:
            return lean.run_script(self, [*keys, *args], len(keys))
        if self._script is None:  # two threads may both register it: the same script either way
            self._script = client.register_script(self.source)
        return self._script(keys=keys, args=args, client=client)


_lean: dict[Any, _LeanConnections | None] = {}

#: Connection settings the lean connections apply. Any other (a credential provider, a client name,
#: keepalive, health checks, RESP3, TLS...) keeps the pool on redis-py. The rest change nothing on the
#: wire: redis-py's own bookkeeping, and its choice of reply parser (Django's backend asks for
#: hiredis's, which the lean connections use anyway).
_LEAN_SETTINGS = frozenset(
    {"host", "port", "db", "username", "password", "path", "socket_timeout", "socket_connect_timeout"}
)
_REDIS_PY_BOOKKEEPING = frozenset(
    {
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "parser_class",
    }
)


def _lean_connections(pool: Any) -> _LeanConnections | None:
    """The lean connections to ``pool``'s server (one set per redis-py pool), or None when they could
    not honour everything the pool was configured with: then redis-py's client runs the script."""
    try:
        return _lean[pool]
    except KeyError:
        with _lock:
            if pool not in _lean:
                _lean[pool] = _LeanConnections(pool) if _lean_can_serve(pool) else None
            return _lean[pool]


def _lean_can_serve(pool: Any) -> bool:
    set_options = {name for name, value in pool.connection_kwargs.items() if value is not None}
    return (
        isinstance(pool, redis.BlockingConnectionPool)  # a bounded pool, waiting for a free connection
        and pool.max_connections <= 10_000
        and pool.connection_class in (redis.connection.Connection, redis.connection.UnixDomainSocketConnection)
        and set_options <= _LEAN_SETTINGS | _REDIS_PY_BOOKKEEPING
    )


class _LeanConnection:
    """One RESP connection: a socket and a hiredis reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()
        self._idle_check = IdleCheck(sock)

    def call(self, *args: Any) -> Any:
        self.sock.sendall(hiredis.pack_command(args))
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("Connection closed by server.")
            self.reader.feed(data)

    def closed_by_server(self) -> bool:
        return self._idle_check.closed_by_server()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _LeanConnections:
    """At most ``max_connections`` raw connections to one server, with the redis-py pool's address,
    database, credentials and timeouts. Like redis-py's BlockingConnectionPool, a queue holds one item
    per allowed connection: an idle connection, or None for a connection not open yet (opened by the
    thread that takes it). A thread finding the queue empty waits up to the pool's ``timeout``; a
    connection closed on an error gives its place back as None, which wakes a waiting thread. A
    connection that fails is closed with every idle one (a restarted server has dropped them all); an
    idle one the server closed is replaced before use. Fresh after a fork. Errors are redis-py's
    exceptions, so callers handle them as before."""

    def __init__(self, pool: Any) -> None:
        options = pool.connection_kwargs
        self._path = options.get("path")
        self._address = (options.get("host") or "localhost", int(options.get("port") or 6379))
        self._db = int(options.get("db") or 0)
        self._username = options.get("username")
        self._password = options.get("password")
        self._timeout = options.get("socket_timeout")
        self._connect_timeout = options.get("socket_connect_timeout") or self._timeout
        self._size = int(pool.max_connections)
        self._wait = pool.timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._slots: queue.LifoQueue[_LeanConnection | None] = queue.LifoQueue()
        for _ in range(self._size):
            self._slots.put(None)

    def run_script(self, script: LuaScript, keys_and_args: list[Any], key_count: int) -> Any:
        reply = self.call("EVALSHA", script.sha, key_count, *keys_and_args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = self.call("EVAL", script.source, key_count, *keys_and_args)
        if isinstance(reply, hiredis.ReplyError):
            raise BaseParser.parse_error(str(reply))  # ResponseError, or its subclass for LOADING, READONLY...
        return reply

    def call(self, *args: Any) -> Any:
        connection = self._take()
        try:
            reply = connection.call(*args)
        except TimeoutError as exc:
            self._drop(connection)
            raise redis.exceptions.TimeoutError(f"Timeout reading from Redis: {exc}") from exc
        except (OSError, hiredis.ProtocolError) as exc:
            self._drop(connection, idle_too=True)
            raise redis.exceptions.ConnectionError(f"Error talking to Redis: {exc}") from exc
        except TypeError as exc:  # an argument hiredis cannot send (redis-py says DataError)
            self._drop(connection)
            raise redis.exceptions.DataError(str(exc)) from exc
        except BaseException:
            self._drop(connection)  # the reply may still be on its way: never reuse it
            raise
        self._slots.put(connection)
        return reply

    def _take(self) -> _LeanConnection:
        if self._pid != os.getpid():
            with _lock:
                if self._pid != os.getpid():
                    self._reset()  # the parent's sockets stay the parent's
        try:
            connection = self._slots.get(timeout=self._wait)
        except queue.Empty:
            raise redis.exceptions.ConnectionError("No connection available.") from None
        if connection is not None and connection.closed_by_server():
            connection.close()
            connection = None
        if connection is None:
            try:
                connection = self._connect()
            except BaseException:
                self._slots.put(None)
                raise
        return connection

    def _drop(self, connection: _LeanConnection, *, idle_too: bool = False) -> None:
        """Closes ``connection`` and gives its place back empty (None), with the idle connections too
        when ``idle_too`` (the server dropped them all)."""
        connection.close()
        if idle_too:
            idle = []
            with contextlib.suppress(queue.Empty):
                while True:
                    idle.append(self._slots.get_nowait())
            for each in idle:
                if each is not None:
                    each.close()
                self._slots.put(None)
        self._slots.put(None)

    def _connect(self) -> _LeanConnection:
        try:
            if self._path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self._connect_timeout)
                sock.connect(self._path)
            else:
                sock = socket.create_connection(self._address, timeout=self._connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self._timeout)
        except TimeoutError as exc:
            raise redis.exceptions.TimeoutError(f"Timeout connecting to Redis: {exc}") from exc
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"Error connecting to Redis: {exc}") from exc
        connection = _LeanConnection(sock)
        try:
            if self._password is not None:
                credentials = (self._username, self._password) if self._username else (self._password,)
                self._expect_ok(connection.call("AUTH", *credentials))
            if self._db:
                self._expect_ok(connection.call("SELECT", self._db))
        except TimeoutError as exc:
            connection.close()
            raise redis.exceptions.TimeoutError(f"Timeout connecting to Redis: {exc}") from exc
        except (OSError, hiredis.ProtocolError) as exc:
            connection.close()
            raise redis.exceptions.ConnectionError(f"Error connecting to Redis: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    def _expect_ok(reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise BaseParser.parse_error(str(reply))


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
