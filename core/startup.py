"""What a long-running process (a gunicorn worker, the outbox worker) does once it has started and
before it serves: the objects it built at start-up are moved out of the garbage collector's reach.

Django, the apps, the URLconf and every module they import come to over 100,000 objects that live as
long as the process. Each full collection of the garbage collector walked them all with the GIL held
(45-66 ms in-process; under load, every few seconds per process, 107-323 ms of wall time), and every
request the process held stood still meanwhile. ``gc.freeze()`` after a last collection puts them in
the permanent generation, so a full collection walks only what was made since (under the same load,
3-95 ms, median 16). Requests' and deliveries' own cycles are collected as before.
``GC_FREEZE=false`` turns it off (docs/OPERATIONS.md).
"""

from __future__ import annotations

import gc

from config.env import Env


def gc_freeze_enabled() -> bool:
    return Env().bool("GC_FREEZE", default=True)


def freeze_start_up_objects(*, urlconf: bool) -> int | None:
    """Collects, then freezes everything alive; with ``urlconf`` (a web process) first loads what its
    first request would: the URLconf and the modules it imports. Returns how many objects were frozen,
    or None when turned off."""
    if not gc_freeze_enabled():
        return None
    from django.apps import apps

    if urlconf and apps.ready:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - imports the URLconf: views, serializers, the schema
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
