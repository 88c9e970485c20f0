"""Credentials a client or provider sends, and our own secrets, never reach the logs."""

import logging

import pytest

from apikeys.services import api_key_create, api_key_revoke
from tests import payloads

pytestmark = pytest.mark.django_db

TWILIO_TOKEN = "twilio-token-do-not-log"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def test_api_keys_good_wrong_and_revoked_are_not_logged(client, settings, logs):
    settings.API_AUTH_REQUIRED = True
    api_key, good = api_key_create(name="ci")
    client.get("/api/conversations", headers={"Authorization": f"Bearer {good}"})
    client.get("/api/conversations", headers={"X-API-Key": "ms_wrong-key-do-not-log"})
    api_key_revoke(api_key=api_key)
    client.get("/api/conversations", headers={"X-API-Key": good})

    assert good not in logs.text
    assert "ms_wrong-key-do-not-log" not in logs.text


def test_webhook_secrets_and_signatures_are_not_logged(client, settings, logs):
    settings.TWILIO_AUTH_TOKEN = [TWILIO_TOKEN]
    response = client.post(
        "/api/webhooks/sms",
        data=payloads.inbound_sms(),
        content_type="application/json",
        headers={"X-Twilio-Signature": "forged-signature-value"},
    )

    assert response.status_code == 403
    assert TWILIO_TOKEN not in logs.text
    assert TWILIO_TOKEN not in response.content.decode()
