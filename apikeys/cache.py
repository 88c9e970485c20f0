"""Active API keys remembered per PostgreSQL connection, forgotten as soon as a key changes.

Every REST request looks its key up; on a busy connection that is one round trip per request to read
a row that almost never changes. So each connection remembers the keys it found active, and
PostgreSQL says when to forget them: triggers on the keys' table (migration 0002) notify the
channel ``api_keys_changed`` whenever a key is revoked or removed, and every connection the service
opens listens on it (``LISTEN``, when the connection is made). PostgreSQL delivers a notification to
each listening connection once the revoking transaction commits; before a remembered key is used,
the connection reads what the server has sent it since (no round trip: the bytes are already in the
socket), and any notification empties its memory. A revocation committed before a request's
check therefore ends the key on that request, on every connection of every process, unless it
committed in the moment (typically under a millisecond on one host) before its notification reached
that connection.

The memory is used only where a notification can arrive: on PostgreSQL, outside a transaction (a
connection inside one receives nothing until it ends; tests run inside one), on a connection that
listened when it was made (not one made while the triggers were missing or disabled, nor one closed
after each request, ``CONN_MAX_AGE`` 0), and never again on a connection the server has ended.
Whatever else happens it is bounded: an entry lives at most ``API_KEY_CACHE_SECONDS`` (0 turns the
memory off), for a connection through a pooler that does not pass notifications on, and a
connection keeps at most ``MAX_KEYS`` of them. Unknown, malformed and revoked keys are never
remembered: each of them is looked up every time, as before. docs/OPERATIONS.md, "API keys
remembered per connection", is the operator's account.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection as default_connection
from psycopg import pq

if TYPE_CHECKING:
    from apikeys.models import ApiKey

logger = logging.getLogger(__name__)

#: The channel migration 0002's triggers notify.
CHANNEL = "api_keys_changed"
#: The most keys one connection remembers; past it, it starts again from none.
MAX_KEYS = 256

_IDLE = pq.TransactionStatus.IDLE
_OK = pq.ConnStatus.OK


class KeyMemory:
    """One connection's remembered keys: digest -> (key, monotonic time it was read). ``generation``
    counts the times it forgot them all; ``broken`` is set for good when the server said it is ending
    the connection."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[ApiKey, float]] = {}
        self.generation = 0
        self.broken = False

    def forget(self, _notification: Any = None) -> None:
        self.keys.clear()
        self.generation += 1

    def end(self) -> None:
        """The connection is ending: no notification will ever reach it again."""
        self.broken = True
        self.forget()

    def notice(self, diagnostic: Any) -> None:
        # A connection ended by the server while idle (a restart, a failover, pg_terminate_backend)
        # hears why as a notice, possibly before the connection reads as closed.
        if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            self.end()


@functools.cache
def _triggers_in_place_sql() -> str:
    """Whether migration 0002's triggers are there and fire (not disabled). Without them nothing would
    ever be notified; ``to_regclass`` is NULL before the table exists (``migrate`` on a new database)."""
    from apikeys.models import ApiKey

    table = f"to_regclass('{ApiKey._meta.db_table}')"
    return (
        f"SELECT {table} IS NOT NULL, (SELECT count(*) FROM pg_trigger WHERE tgrelid = {table}"
        " AND tgenabled IN ('O', 'A')"
        " AND tgname IN ('api_key_changed_update', 'api_key_changed_delete', 'api_key_changed_truncate')) = 3"
    )


def connection_listen(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: a new PostgreSQL connection listens on ``CHANNEL`` and gets a
    memory of its own, if the notifying triggers are in place. None for a connection made inside a
    transaction (autocommit off: its LISTEN would take effect only if that transaction committed), nor
    for one closed after each request (``CONN_MAX_AGE`` 0: it would remember nothing for long)."""
    if connection.vendor != "postgresql" or settings.API_KEY_CACHE_SECONDS <= 0:
        return
    if connection.settings_dict.get("CONN_MAX_AGE", 0) == 0:  # None: kept for ever
        return
    raw = connection.connection
    if not raw.autocommit:
        return
    try:
        table, triggers = raw.execute(_triggers_in_place_sql()).fetchone()
        if not triggers:
            if table:  # new code before its migration, or the triggers disabled: never stale, only slower
                logger.warning(
                    "The API key change triggers (migration apikeys.0002) are missing or disabled; API keys "
                    "are looked up on every request"
                )
            return
        raw.execute(f"LISTEN {CHANNEL}")
    except Exception as exc:  # a pooler that refuses LISTEN: this connection simply remembers nothing
        logger.warning(
            "Listening on %s failed (%s); API keys are looked up on every request on this connection", CHANNEL, exc
        )
        return
    memory = KeyMemory()
    raw.add_notify_handler(memory.forget)  # notifications read while a statement runs
    raw.add_notice_handler(memory.notice)
    raw._api_key_memory = memory


def _usable_memory() -> KeyMemory | None:
    """This thread's connection's memory, brought up to date with every notification the server has
    sent it; None when the memory may not be used now (see the module's docstring)."""
    if default_connection.in_atomic_block:
        return None
    raw = default_connection.connection
    memory: KeyMemory | None = getattr(raw, "_api_key_memory", None)
    if memory is None:
        return None
    pgconn = raw.pgconn
    with raw.lock:
        if pgconn.transaction_status != _IDLE or memory.broken:
            return None
        try:
            pgconn.consume_input()
        except Exception:  # the connection broke: the lookup meets the error the usual way
            memory.end()
            return None
        while (notification := pgconn.notifies()) is not None:
            memory.forget(notification)
        if memory.broken or pgconn.status != _OK:  # a FATAL notice just read, or the end of the stream
            memory.end()
            return None
    return memory


class Lookup:
    """One key lookup: what the connection remembers now, and whether what is read next may be
    remembered (nothing was forgotten in between)."""

    def __init__(self) -> None:
        self.memory = _usable_memory()
        self.generation = self.memory.generation if self.memory is not None else -1

    def remembered(self, digest: str) -> ApiKey | None:
        """The key with this digest if the connection remembers it as active."""
        if self.memory is None:
            return None
        entry = self.memory.keys.get(digest)
        if entry is None:
            return None
        api_key, read_at = entry
        if time.monotonic() - read_at >= settings.API_KEY_CACHE_SECONDS:
            del self.memory.keys[digest]
            return None
        return api_key

    def remember(self, digest: str, api_key: ApiKey) -> None:
        """Remembers a key read as active since this lookup began, unless a notification arrived
        meanwhile: the revocation it announces may have committed after the read's snapshot."""
        memory = _usable_memory()
        if memory is None or memory is not self.memory or memory.generation != self.generation:
            return
        if len(memory.keys) >= MAX_KEYS:
            memory.forget()
        memory.keys[digest] = (api_key, time.monotonic())
