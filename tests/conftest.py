import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from providers import breaker
from tests import payloads


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def sms_payload():
    return payloads.sms()


@pytest.fixture
def email_payload():
    return payloads.email()


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test starts with empty caches: the mock providers' memory of idempotency tokens and the
    rate-limit counters (the test settings keep both in memory), and no process-local breaker read."""
    for cache in caches.all():
        cache.clear()
    breaker._clean_until.clear()
