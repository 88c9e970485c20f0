import pytest

from messaging.backoff import retry_delay_seconds


@pytest.fixture(autouse=True)
def _schedule(settings):
    settings.RETRY_BASE_DELAY_SECONDS = 2
    settings.RETRY_MAX_DELAY_SECONDS = 60


@pytest.mark.parametrize(("attempts", "ceiling"), [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (12, 60)])
def test_delay_doubles_per_attempt_within_jitter_and_is_capped(attempts, ceiling):
    delays = [retry_delay_seconds(attempts=attempts) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 1, "jitter spreads retries out"


def test_retry_after_from_the_provider_is_a_floor():
    assert retry_delay_seconds(attempts=1, retry_after=30) == 30
