import pytest

from apikeys.keys import key_generate
from tests.apikeys.factories import ApiKeyFactory


@pytest.fixture
def auth_required(settings):
    settings.API_AUTH_REQUIRED = True


@pytest.fixture
def key():
    """A valid key whose row exists."""
    key = key_generate()
    ApiKeyFactory(key=key)
    return key
