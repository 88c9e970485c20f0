"""Which ``synchronous_commit`` each write to a table ran under: a trigger notes it, with one column of
the row written, as the write's statement ends, which is the setting its commit runs under when the
statement is its own transaction."""

import contextlib
from collections.abc import Callable, Iterator

from django.db import connection


@contextlib.contextmanager
def commit_settings_noted(
    table: str, column: str, *, on: str = "INSERT"
) -> Iterator[Callable[[], list[tuple[str, str]]]]:
    """While open, every ``on`` (``INSERT``, ``INSERT OR UPDATE``) on ``table`` is noted; the callable
    returns the (``column``'s new value, setting) of each write since its last call, in order."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_commit_settings (id serial PRIMARY KEY, value text, setting text)")
        cursor.execute(
            "CREATE FUNCTION test_note_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " INSERT INTO test_commit_settings (value, setting)"
            f" VALUES (NEW.{column}, current_setting('synchronous_commit'));"
            " RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER test_note_commit_setting AFTER {on} ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION test_note_commit_setting()"
        )

    def seen() -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM test_commit_settings RETURNING id, value, setting")
            return [(value, setting) for _, value, setting in sorted(cursor.fetchall())]

    try:
        yield seen
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER test_note_commit_setting ON {table}")
            cursor.execute("DROP FUNCTION test_note_commit_setting()")
            cursor.execute("DROP TABLE test_commit_settings")


def synchronous_commit() -> str:
    """The connection's own setting (a transaction's local one ends with it)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]
