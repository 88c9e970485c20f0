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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

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
    """A Lua script run by its SHA1 on the client given (redis-py loads it into Redis on first use, and
    again after a restart emptied Redis's script cache): one atomic round trip for a few commands."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._script: Any = None

    def __call__(self, client: Any, *, keys: list[Any], args: list[Any]) -> Any:
        if self._script is None:  # two threads may both register it: the same script either way
            self._script = client.register_script(self.source)
        return self._script(keys=keys, args=args, client=client)


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
