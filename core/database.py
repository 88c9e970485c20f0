"""The database being unreachable, frozen or too slow is answered 503 ``database_unavailable`` with a
Retry-After, on every endpoint: the API and webhooks in the JSON envelope, the admin as a short page.

``OperationalError`` and ``InterfaceError`` are what the driver raises when it cannot connect, loses the
connection, or a statement/lock/client timeout ends a wait (core.postgresql). Other database errors
(integrity, programming) are bugs or bad input and keep their own handling.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

from core.errors import error_body

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)

#: How much longer than a statement's bound the client waits for one round trip inside
#: ``longer_bounds``, so that the server's cancel, not the client's, ends a wait that runs over.
_CLIENT_MARGIN_SECONDS = 5.0


#: ``synchronous_commit`` off for the current transaction alone (``set_config``'s ``is_local``), as an
#: expression a statement evaluates where it wants its own transaction to commit without waiting for
#: the WAL flush: only in a statement that is its own transaction (autocommit), so the setting never
#: reaches anyone else's writes (messaging's outcomes, webhooks' duplicates).
ASYNCHRONOUS_COMMIT = "set_config('synchronous_commit', 'off', true)"


@contextlib.contextmanager
def longer_bounds(*, statement: float | None, lock: float) -> Iterator[CursorWrapper]:
    """A transaction, and a cursor in it, whose waits have bounds of their own instead of a request's
    (``DB_STATEMENT_TIMEOUT``, ``DB_LOCK_TIMEOUT``, and the client's ``DB_QUERY_TIMEOUT`` on each
    round trip): ``statement`` and ``lock`` seconds (``statement`` None: no bound, on the client's side
    either). For the few waits that must outlast a request's bounds: an operator's command over every
    row, a status callback waiting for a send's commit. Set for the transaction alone (``SET LOCAL``),
    on PostgreSQL; elsewhere the block only runs in a transaction."""
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        client = None if statement is None else statement + _CLIENT_MARGIN_SECONDS
        lifted = raw.query_timeout_set(client) if hasattr(raw, "query_timeout_set") else contextlib.nullcontext()
        with lifted, connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                    [f"{round((statement or 0) * 1000)}ms", f"{round(lock * 1000)}ms"],
                )
            yield cursor


def is_database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_UNAVAILABLE)


def database_unavailable_body() -> dict:
    retry_after = settings.DATABASE_RETRY_AFTER_SECONDS
    return error_body(
        "database_unavailable",
        f"The database is unavailable right now; retry in {retry_after} s.",
        {"retry_after": retry_after},
    )


def database_unavailable_headers() -> dict[str, str]:
    return {"Retry-After": str(settings.DATABASE_RETRY_AFTER_SECONDS)}


def database_unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """503 for a request that met an unavailable database; HTML for the admin, JSON elsewhere."""
    logger.warning("Database unavailable on %s %s: %s", request.method, request.path, str(exc).strip()[:200])
    if request.path.startswith("/admin"):
        retry_after = settings.DATABASE_RETRY_AFTER_SECONDS
        page = (
            "<!doctype html><html><head><title>Database unavailable</title></head><body>"
            "<h1>Database unavailable</h1>"
            f"<p>The service cannot reach its database right now. Try again in {retry_after} seconds.</p>"
            f"<p><small>{escape(request.method)} {escape(request.path)}</small></p></body></html>"
        )
        response: HttpResponse = HttpResponse(page, status=503, content_type="text/html; charset=utf-8")
    else:
        response = JsonResponse(database_unavailable_body(), status=503)
    for name, value in database_unavailable_headers().items():
        response[name] = value
    return response
