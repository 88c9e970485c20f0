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
def _fresh_rate_limits():
    """Every test starts with empty rate-limit counters (the test settings keep them in memory)."""
    caches["ratelimit"].clear()
