from django.apps import AppConfig
from django.conf import settings
from django.core.cache import close_caches
from django.core.cache.backends.base import BaseCache
from django.core.signals import request_finished, setting_changed
from django.utils.module_loading import import_string


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core HTTP plumbing"

    def ready(self) -> None:
        from core import field_numbering

        field_numbering.install()
        close_caches_only_where_it_does_something()
        setting_changed.connect(_caches_changed, dispatch_uid="core.caches_changed")


def close_caches_only_where_it_does_something() -> bool:
    """Django closes every cache after each request (``request_finished`` -> ``close_caches``). With the
    backends configured here (Redis, local memory, files) ``close()`` is ``BaseCache``'s, which does
    nothing, but finding the caches this thread has opened costs a context-local lookup per alias:
    4.5% of an inbound webhook's instructions. So the receiver is disconnected while every configured
    backend's ``close`` is that no-op, and stays connected for any backend that closes something
    (memcached's). Returns whether it is connected."""
    backends = {import_string(cache["BACKEND"]) for cache in settings.CACHES.values()}
    needed = any(backend.close is not BaseCache.close for backend in backends)
    if needed:
        request_finished.connect(close_caches)
    else:
        request_finished.disconnect(close_caches)
    return needed


def _caches_changed(*, setting: str, **kwargs) -> None:
    if setting == "CACHES":
        close_caches_only_where_it_does_something()
