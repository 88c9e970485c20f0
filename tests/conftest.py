import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

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
    """The mock providers remember idempotency tokens in a cache; each test starts with none."""
    for cache in caches.all():
        cache.clear()
