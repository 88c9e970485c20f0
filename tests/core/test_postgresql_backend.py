"""core.postgresql: Django's per-request health check of a reused connection is skipped when the
server answered on that connection a moment ago, and made when the connection has been idle."""

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
