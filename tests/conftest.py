import pytest
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
