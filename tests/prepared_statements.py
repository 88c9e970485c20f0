"""What PostgreSQL holds prepared on the test's connection (``pg_prepared_statements``)."""

from __future__ import annotations

from django.db import connection


def prepared_runs(fragment: str) -> list[int]:
    """The runs (generic plus custom plans) of each statement prepared on the default connection whose
    text holds ``fragment`` (a piece of a LIKE pattern: ``%`` matches anything). A statement prepared
    by core.prepared outlives a test's rollback, so a test counts the runs it makes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return [row[0] for row in cursor.fetchall()]
