"""core.postgresql: Django's per-request health check of a reused connection is skipped when the
server answered on that connection a moment ago, and made when the connection has been idle; persistent
connections are retired at ages spread within CONN_MAX_AGE."""

import time

import pytest
from django.db import connections

pytestmark = pytest.mark.django_db


@pytest.fixture
def connection():
    return connections["default"]  # the wrapper itself: monkeypatch restores attributes on it, not on a proxy


@pytest.fixture
def health_checks(connection, monkeypatch):
    """Django's state at the first query of a request on a reused connection, with is_usable() counted."""
    connection.ensure_connection()
    checks: list[bool] = []
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(True) or True)
    return checks


def test_a_connection_the_server_just_answered_is_not_checked_again(connection, health_checks, monkeypatch):
    before = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection.answered_at >= before  # every answer is noted
    # The next request begins at once (pinned: a stall of this test longer than the window would not be
    # what is tested here).
    monkeypatch.setattr(connection.connection, "answered_at", time.monotonic())
    connection.health_check_done = False

    connection.close_if_health_check_failed()

    assert health_checks == []
    assert connection.health_check_done


def test_an_idle_connection_is_checked(connection, health_checks, monkeypatch):
    idle = connection.HEALTH_CHECK_IDLE_SECONDS + 1
    monkeypatch.setattr(connection.connection, "answered_at", time.monotonic() - idle)

    connection.close_if_health_check_failed()

    assert health_checks == [True]


def test_a_connection_that_had_an_error_is_checked(connection, health_checks, monkeypatch):
    monkeypatch.setattr(connection.connection, "answered_at", time.monotonic())
    monkeypatch.setattr(connection, "errors_occurred", True)

    connection.close_if_health_check_failed()

    assert health_checks == [True]


def test_timestamps_load_as_djangos_own_loader_loads_them(connection):
    """The backend parses timestamptz with psycopg's C loader; values, time zone and errors are Django's."""
    import datetime

    from django.db import DataError
    from django.db.backends.postgresql.psycopg_any import register_tzloader

    sql = (
        "SELECT '2026-01-02 03:04:05.123456+00'::timestamptz, '1999-12-31 23:59:59-05'::timestamptz,"
        " '0001-01-01 00:00:00+00'::timestamptz, NULL::timestamptz"
    )

    def fetch(djangos):
        with connection.cursor() as cursor:
            if djangos:
                register_tzloader(connection.timezone, cursor.cursor)
            cursor.execute(sql)
            return cursor.fetchone()

    ours, djangos = fetch(False), fetch(True)

    assert ours == djangos
    assert [value.tzinfo for value in ours[:3]] == [connection.timezone] * 3 == [datetime.UTC] * 3
    assert ours[0].microsecond == 123456
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'infinity'::timestamptz")
        with pytest.raises(DataError):
            cursor.fetchone()
    assert "psycopg_any" not in type(connection.connection.adapters.get_loader(1184, 0)).__module__


@pytest.fixture
def new_wrapper(connection):
    """A wrapper of its own on the test database, for connecting and closing outside the test's transaction."""
    wrappers = []
    before = connection.settings_dict["CONN_MAX_AGE"]

    def make(max_age):
        # A copy of the settings: create_connection() would share (and this would change) the session's.
        wrapper = type(connection)({**connection.settings_dict, "CONN_MAX_AGE": max_age}, "default")
        wrappers.append(wrapper)
        return wrapper

    yield make
    for wrapper in wrappers:
        wrapper.close()
    assert connection.settings_dict["CONN_MAX_AGE"] == before  # the session's settings untouched


def test_persistent_connections_are_retired_at_spread_ages_within_conn_max_age(new_wrapper):
    """A process's connections, opened together, are not all reopened in the same second: each one's age
    limit lies between MIN_AGE_SHARE and the whole of CONN_MAX_AGE, and they differ."""
    wrapper = new_wrapper(600)
    limits = []
    for _ in range(12):
        opened = time.monotonic()
        wrapper.connect()
        limits.append(wrapper.close_at - opened)
        wrapper.close()
    assert all(600 * wrapper.MIN_AGE_SHARE - 1 <= limit <= 600 for limit in limits), limits
    assert max(limits) - min(limits) > 10, limits  # 12 draws over 300 s; all within 10 s: about 1 in 10**16


@pytest.mark.parametrize("max_age", [0, None])
def test_connections_per_request_and_kept_for_ever_are_left_as_django_makes_them(new_wrapper, max_age):
    wrapper = new_wrapper(max_age)
    opened = time.monotonic()
    wrapper.connect()
    if max_age is None:
        assert wrapper.close_at is None
    else:
        assert opened <= wrapper.close_at <= time.monotonic()  # closed at the end of the request
