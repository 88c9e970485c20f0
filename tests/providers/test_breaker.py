"""The circuit breaker per provider: opens after consecutive transient failures, lets one probe
through once the open period is over, and never stops sends when its own store is down."""

import time

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches

from providers import breaker
from providers.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    breaker_permit,
    breaker_record_failure,
    breaker_record_success,
    breaker_state,
)


@pytest.fixture
def clock(monkeypatch):
    """breaker's wall clock, moved by hand."""
    now = {"t": 1_000_000.0}
    monkeypatch.setattr(breaker.time, "time", lambda: now["t"])
    return now


@pytest.fixture(autouse=True)
def _breaker_settings(settings):
    settings.PROVIDER_BREAKER_FAILURES = 3
    settings.PROVIDER_BREAKER_OPEN_SECONDS = 30


def fail(times: int, provider: str = "twilio") -> str:
    state = CLOSED
    for _ in range(times):
        state = breaker_record_failure(provider=provider)
    return state


def test_failures_below_the_threshold_keep_it_closed(clock):
    assert fail(2) == CLOSED
    assert breaker_permit(provider="twilio").allowed


def test_a_success_resets_the_count(clock):
    fail(2)
    breaker_record_success(provider="twilio")

    assert fail(2) == CLOSED


def test_the_threshold_opens_it_and_sends_are_refused_with_the_time_left(clock):
    assert fail(3) == OPEN

    permit = breaker_permit(provider="twilio")
    assert (permit.allowed, permit.state, permit.retry_in) == (False, OPEN, 30)
    assert breaker_permit(provider="sendgrid").allowed, "one breaker per provider"


def test_after_the_open_period_exactly_one_probe_goes_through(clock):
    fail(3)
    clock["t"] += 31

    first, second = breaker_permit(provider="twilio"), breaker_permit(provider="twilio")

    assert (first.allowed, first.state) == (True, HALF_OPEN)
    assert (second.allowed, second.state) == (False, HALF_OPEN)


def test_a_successful_probe_closes_it(clock):
    fail(3)
    clock["t"] += 31
    breaker_permit(provider="twilio")

    breaker_record_success(provider="twilio")

    assert breaker_state(provider="twilio") == CLOSED


def test_a_failed_probe_opens_it_for_another_period(clock):
    fail(3)
    clock["t"] += 31
    breaker_permit(provider="twilio")

    assert breaker_record_failure(provider="twilio") == OPEN
    assert breaker_permit(provider="twilio").retry_in == 30


def test_an_unreachable_store_counts_as_closed(settings):
    settings.CACHES = {
        **settings.CACHES,
        settings.PROVIDER_BREAKER_CACHE: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.1, "socket_timeout": 0.1},
        },
    }

    assert fail(5) == CLOSED
    assert breaker_permit(provider="twilio").allowed


class TestCleanReads:
    """A process trusts a clean, closed read for CLEAN_READ_SECONDS instead of asking the store before
    every send; its own failures end that at once."""

    @pytest.fixture
    def store_reads(self, monkeypatch):
        reads: list[str] = []
        original = breaker._cache_call

        def counting(method, *args, **kwargs):
            if method == "get_many":
                reads.append(method)
            return original(method, *args, **kwargs)

        monkeypatch.setattr(breaker, "_cache_call", counting)
        return reads

    @staticmethod
    def open_elsewhere(provider: str = "twilio") -> None:
        """Another process opens the breaker: only the shared store changes."""
        caches[django_settings.PROVIDER_BREAKER_CACHE].set(f"breaker:{provider}:open_until", time.time() + 30, None)

    def test_a_clean_read_stands_for_a_while_without_asking_the_store(self, store_reads):
        assert breaker_permit(provider="twilio").clean

        self.open_elsewhere()

        assert [breaker_permit(provider="twilio").allowed for _ in range(3)] == [True, True, True]
        assert store_reads == ["get_many"]

    def test_it_is_read_again_once_the_window_is_over(self, store_reads, monkeypatch):
        breaker_permit(provider="twilio")
        self.open_elsewhere()
        monkeypatch.setattr(breaker, "CLEAN_READ_SECONDS", 0.0)
        breaker._clean_until["twilio"] = 0.0  # the window ends

        assert not breaker_permit(provider="twilio").allowed
        assert store_reads == ["get_many", "get_many"]

    def test_a_failure_of_its_own_ends_the_window(self, store_reads):
        assert breaker_permit(provider="twilio").clean

        fail(1)

        permit = breaker_permit(provider="twilio")
        assert permit.allowed
        assert not permit.clean  # the failure counted: a success must reset it
        assert store_reads == ["get_many", "get_many"]

    def test_a_read_that_finds_failures_is_not_kept(self, store_reads):
        fail(1)

        breaker_permit(provider="twilio")
        breaker_permit(provider="twilio")

        assert store_reads == ["get_many", "get_many"]

    def test_a_clean_read_overtaken_by_a_failure_of_this_process_is_not_kept(self, monkeypatch):
        # Thread A reads "clean" from the store; before it keeps that read, thread B records a failure.
        original = breaker._cache_call

        def read_then_fail_elsewhere(method, *args, **kwargs):
            result = original(method, *args, **kwargs)
            if method == "get_many":
                monkeypatch.setattr(breaker, "_cache_call", original)
                breaker.breaker_record_failure(provider="twilio")  # recorded while A's read was in flight
            return result

        monkeypatch.setattr(breaker, "_cache_call", read_then_fail_elsewhere)

        breaker_permit(provider="twilio")  # A: its read predates B's failure

        assert breaker._clean_until.get("twilio", 0.0) <= time.monotonic()
        assert not breaker_permit(provider="twilio").clean  # read again: the failure counts
