"""A second database session in a test, as another process (a worker, the admin, a management command)
would hold: it commits or rolls back on its own, outside the test's connection."""

import contextlib
from collections.abc import Iterator

import psycopg
from django.db import connection


@contextlib.contextmanager
def second_session(*, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"],
        autocommit=autocommit,
    ) as session:
        yield session
