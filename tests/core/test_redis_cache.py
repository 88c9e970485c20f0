"""core.redis_cache: Django's Redis backend with one client per connection pool."""

from __future__ import annotations

import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from core.redis_cache import LuaScript, RedisCache, _lean_connections
from tests.ports import free_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def cache():
    backend = RedisCache(REDIS_URL, {"KEY_PREFIX": f"redis-cache-test-{uuid.uuid4().hex}"})
    yield backend
    backend.delete_many(["token", "counter"])  # never clear(): it is FLUSHDB


def test_every_operation_uses_one_client_per_pool(cache):
    first = cache._cache.get_client(write=True)

    assert cache._cache.get_client("any-key", write=True) is first
    assert cache._cache.get_client() is first  # one server: reads and writes share its pool
    assert first.connection_pool is cache._cache._get_connection_pool(write=True)


def test_cache_objects_of_one_server_share_one_pool_and_client(cache):
    """Django makes a cache object per thread: they must not each open their own connections."""
    other_thread = RedisCache(REDIS_URL, {"KEY_PREFIX": "another-prefix"})

    assert other_thread._cache.get_client(write=True) is cache._cache.get_client(write=True)
    assert other_thread._cache._get_connection_pool(True) is cache._cache._get_connection_pool(True)


def test_other_options_get_their_own_pool(cache):
    other = RedisCache(REDIS_URL, {"OPTIONS": {"socket_timeout": 0.5}})

    assert other._cache.get_client() is not cache._cache.get_client()


def test_it_stores_and_reads_as_django_backend_does(cache):
    assert cache.add("token", {"id": "SM1"}, 60) is True
    assert cache.add("token", {"id": "SM2"}, 60) is False
    assert cache.get("token") == {"id": "SM1"}
    cache.set("counter", 0, 60)
    assert cache.incr("counter") == 1
    assert cache.get_many(["token", "counter", "missing"]) == {"token": {"id": "SM1"}, "counter": 1}


# LuaScript and its lean connections -------------------------------------------------------------

INCREMENT = LuaScript(
    """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
)
FAILING = LuaScript("return redis.error_reply('ERR no way')")


@pytest.fixture
def key():
    name = f"lua-test-{uuid.uuid4().hex}"
    yield name
    redis.Redis.from_url(REDIS_URL).delete(name)


def pool_of(url: str, **options):
    return redis.BlockingConnectionPool.from_url(url, **options)


def test_a_script_runs_on_lean_connections_in_the_pool_s_database(key):
    pool = pool_of(REDIS_URL, max_connections=5, timeout=1)
    client = redis.Redis(connection_pool=pool)

    assert [INCREMENT(client, keys=[key], args=[60]) for _ in range(3)] == [1, 2, 3]

    assert _lean_connections(pool) is not None
    assert int(client.get(key)) == 3  # the database of the URL, as redis-py's own commands see it
    assert 0 < client.ttl(key) <= 60


def test_the_caches_as_configured_for_production_run_scripts_on_lean_connections():
    """Django's backend adds options of its own (its reply parser): none of them may send the
    production caches back to redis-py's client for the scripts."""
    from config.settings.base import _caches

    configured = _caches(REDIS_URL, 0.25, 1.25)
    for name in ("ratelimit", "mock_providers"):
        backend = RedisCache(configured[name]["LOCATION"], {"OPTIONS": configured[name]["OPTIONS"]})
        pool = backend._cache.get_client(write=True).connection_pool

        assert _lean_connections(pool) is not None, name


def test_a_script_emptied_from_redis_s_cache_is_sent_again(key):
    client = redis.Redis(connection_pool=pool_of(REDIS_URL))
    INCREMENT(client, keys=[key], args=[60])
    client.script_flush()  # as after a restart

    assert INCREMENT(client, keys=[key], args=[60]) == 2
    assert client.script_exists(INCREMENT.sha) == [True]


def test_an_error_reply_is_redis_py_s_response_error():
    client = redis.Redis(connection_pool=pool_of(REDIS_URL))

    with pytest.raises(redis.exceptions.ResponseError, match="no way"):
        FAILING(client, keys=[], args=[])


def test_connections_the_server_closed_are_replaced_before_use(key):
    pool = pool_of(REDIS_URL, max_connections=3, timeout=1)
    client = redis.Redis(connection_pool=pool)
    INCREMENT(client, keys=[key], args=[60])
    lean = _lean_connections(pool)
    assert lean is not None
    idle = lean._slots.get_nowait()  # the connection just used, on top
    lean._slots.put(idle)
    client.client_kill("{}:{}".format(*idle.sock.getsockname()))  # as a restart or a timeout would

    assert INCREMENT(client, keys=[key], args=[60]) == 2  # not an error
    assert lean._slots.qsize() == 3


def test_an_unreachable_server_is_redis_py_s_connection_error_and_its_slot_is_kept():
    client = redis.Redis(connection_pool=pool_of(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5))

    with pytest.raises(redis.exceptions.ConnectionError):
        INCREMENT(client, keys=["any"], args=[60])
    slots = _lean_connections(client.connection_pool)._slots
    assert slots.qsize() == client.connection_pool.max_connections  # the failed connection's place is free again


def test_a_thread_waiting_for_a_connection_gets_the_place_of_one_closed_on_a_timeout():
    """A server that accepts and never answers: the first call times out and its connection is closed;
    the thread waiting for the pool's only connection takes its place at once (and times out in turn),
    instead of waiting out the pool's timeout for a connection that will never be given back."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        client = redis.Redis(connection_pool=pool_of(url, max_connections=1, timeout=30, socket_timeout=0.3))

        def call(_):
            try:
                INCREMENT(client, keys=["any"], args=[60])
            except redis.exceptions.RedisError as exc:
                return type(exc)

        with ThreadPoolExecutor(max_workers=2) as threads:
            errors = list(threads.map(call, range(2)))

    assert errors == [redis.exceptions.TimeoutError, redis.exceptions.TimeoutError]
    assert _lean_connections(client.connection_pool)._slots.qsize() == 1


def test_threads_share_at_most_the_pool_s_number_of_connections(key):
    pool = pool_of(REDIS_URL, max_connections=3, timeout=5)
    client = redis.Redis(connection_pool=pool)
    lean = _lean_connections(pool)
    opened = []
    connect = lean._connect
    lean._connect = lambda: opened.append(1) or connect()

    with ThreadPoolExecutor(max_workers=16) as threads:
        counts = list(threads.map(lambda _: INCREMENT(client, keys=[key], args=[60]), range(400)))

    assert sorted(counts) == list(range(1, 401))
    assert 1 <= len(opened) <= 3


def test_an_argument_hiredis_cannot_send_is_a_data_error_and_frees_the_connection(key):
    pool = pool_of(REDIS_URL, max_connections=1, timeout=1)
    client = redis.Redis(connection_pool=pool)

    with pytest.raises(redis.exceptions.DataError):
        INCREMENT(client, keys=[key], args=[None])
    assert INCREMENT(client, keys=[key], args=[60]) == 1  # the only connection is usable again


def test_a_forked_child_opens_its_own_connections(key):
    client = redis.Redis(connection_pool=pool_of(REDIS_URL))
    INCREMENT(client, keys=[key], args=[60])
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: a script on the inherited pool, its answer through the pipe
        try:
            os.write(write, str(INCREMENT(client, keys=[key], args=[60])).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    answer = os.read(read, 32)
    os.close(read)

    assert answer == b"2"
    assert INCREMENT(client, keys=[key], args=[60]) == 3  # the parent's connection was not disturbed


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("rediss://127.0.0.1:6379/0", {}),  # TLS
        (REDIS_URL, {"client_name": "named"}),  # a setting the lean connections do not apply
    ],
)
def test_pools_the_lean_connections_cannot_honour_keep_redis_py_s_client(url, options):
    assert _lean_connections(pool_of(url, **options)) is None
    assert _lean_connections(redis.ConnectionPool.from_url(REDIS_URL)) is None  # unbounded: no waiting for a place


def test_a_script_still_runs_through_redis_py_where_lean_connections_cannot(key):
    client = redis.Redis(connection_pool=pool_of(REDIS_URL, client_name="named"))

    assert [INCREMENT(client, keys=[key], args=[60]) for _ in range(2)] == [1, 2]
