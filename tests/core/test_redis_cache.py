"""core.redis_cache: Django's Redis backend with one client per connection pool."""

from __future__ import annotations

import os
import uuid

import pytest

from core.redis_cache import RedisCache

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
