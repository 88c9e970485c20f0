"""What a long-running process (a gunicorn worker, the outbox worker) does once it has started and
before it serves: the objects it built at start-up are moved out of the garbage collector's reach.

Django, the apps, the URLconf and every module they import come to over 100,000 objects that live as
long as the process. Each full collection of the garbage collector walked them all with the GIL held
(45-66 ms in-process; under load, every few seconds per process, 107-323 ms of wall time), and every
request the process held stood still meanwhile. ``gc.freeze()`` after a last collection puts them in
the permanent generation, so a full collection walks only what was made since (under the same load,
3-95 ms, median 16). Requests' and deliveries' own cycles are collected as before.
``GC_FREEZE=false`` turns it off (docs/OPERATIONS.md).

A web process also has each of its threads open its database connection before it serves
(``warm_database_connection``, run on every thread by config/gunicorn.py): otherwise the first request
on each thread waits for a new connection and a server process that has yet to load the tables, the
thread's first requests after a start or a restart being the slowest the service answers.

And a web process with ``DEBUG`` off disconnects two of Django's per-request signal receivers that
have nothing to do there (``drop_idle_request_receivers``).
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


def warm_database_connection() -> None:
    """Opens this thread's database connection, as its first request would, and has the server load
    each model's table and its indexes into the caches of its process (planning a statement over a
    table loads both), which that request would otherwise wait for. Measured on a new connection
    (docs/PERFORMANCE.md, nineteenth round): connecting takes about 7 ms of a first request's 15-18 ms
    on an idle machine, loading the tables 1-2 ms; the rest (the server compiling the triggers'
    functions and planning each prepared statement, the process's own first-use caches) is left to
    the first requests."""
    from django.apps import apps
    from django.db import connection

    connection.ensure_connection()
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if model._meta.managed and not model._meta.proxy:
                cursor.execute(f"SELECT 1 FROM {quote(model._meta.db_table)} LIMIT 0")


def drop_idle_request_receivers() -> list[str]:
    """Disconnects two receivers Django runs around every request that do nothing in a web process
    with ``DEBUG`` off, and returns their names (none with ``DEBUG`` on):

    - ``reset_queries`` (``request_started``) empties each connection's query log, which only
      ``DEBUG`` (or a test capturing queries, with its own count) fills;
    - ``reset_urlconf`` (``request_finished``) forgets the thread's URLconf, which the next
      request's ``get_response`` sets again before it resolves anything.

    Together 50,000-57,000 instructions a request in a served process: 2.2% of an inbound message's,
    1.2% of a send's, 3.4% of a health check's (docs/PERFORMANCE.md, thirty-first round).
    ``close_old_connections`` stays on both signals."""
    from django.conf import settings

    if not settings.configured or settings.DEBUG:
        return []
    from django.core.handlers.base import reset_urlconf
    from django.core.signals import request_finished, request_started
    from django.db import reset_queries

    dropped = []
    if request_started.disconnect(reset_queries):
        dropped.append("reset_queries")
    if request_finished.disconnect(reset_urlconf):
        dropped.append("reset_urlconf")
    return dropped
