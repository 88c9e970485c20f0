"""core.apps: Django's close_caches runs after each request only where a configured cache backend's
close() does something."""

from django.core.cache import close_caches
from django.core.signals import request_finished
from django.test import override_settings

from core.apps import close_caches_only_where_it_does_something


def _connected() -> bool:
    return close_caches in [receiver() for _, receiver, *_ in request_finished.receivers]


def test_the_projects_caches_close_nothing_so_nothing_closes_them_per_request():
    assert not close_caches_only_where_it_does_something()
    assert not _connected()


def test_a_backend_that_closes_connections_keeps_djangos_receiver():
    closing = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": "127.0.0.1:11211"}
    with override_settings(CACHES={"default": closing}):
        assert _connected()
    assert not _connected()  # the project's own caches again
