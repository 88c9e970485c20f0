"""Each HTTP adapter against the provider simulator: the request it makes is the one the real API
takes (the simulator checks auth, paths and fields as the providers do), the answer is read back,
and the idempotency token makes a repeat a replay, not a second message."""

import re

import pytest

from providers.base import ProviderError
from providers.registry import provider_get
from tests.providers.http.conftest import outbound
from tests.providers.simulator.conftest import wait_for


def test_twilio_sends_an_sms_with_basic_auth_and_reads_the_sid(sim):
    result = provider_get("twilio").send(outbound("sms"))

    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_message_id)
    assert result.status == "queued"
    assert result.response["num_segments"] == "1"
    assert sim.stats()["twilio"] == {"requests": 1, "sends": 1, "replays": 0, "errors": 0}


def test_twilio_sends_media_as_an_mms(sim):
    result = provider_get("twilio").send(outbound("mms"))

    assert result.provider_message_id.startswith("MM")
    assert result.response["num_media"] == "1"


def test_twilio_repeat_with_the_same_token_is_a_replay_with_the_same_sid(sim):
    twilio = provider_get("twilio")

    first = twilio.send(outbound("sms", token="same"))
    again = twilio.send(outbound("sms", token="same"))

    assert again.provider_message_id == first.provider_message_id
    assert sim.stats()["twilio"]["sends"] == 1
    assert sim.stats()["twilio"]["replays"] == 1


def test_twilio_status_callback_url_is_the_public_base_url(sim, settings, receiver):
    settings.PUBLIC_BASE_URL = receiver.url
    sim.post_json("/control", {"callbacks": True, "callback_delay_ms": [0, 10]})

    provider_get("twilio").send(outbound("sms"))

    callbacks = wait_for(lambda: receiver.on("/api/webhooks/sms/status"), "a status callback")
    assert callbacks[0].form()["MessageStatus"] in {"queued", "sent", "delivered"}


def test_twilio_wrong_auth_token_is_a_permanent_20003(sim, settings):
    settings.TWILIO_AUTH_TOKEN = ["wrong"]

    with pytest.raises(ProviderError) as caught:
        provider_get("twilio").send(outbound("sms"))

    assert (caught.value.code, caught.value.retryable) == (20003, False)


def test_twilio_invalid_number_is_a_permanent_21211(sim):
    with pytest.raises(ProviderError) as caught:
        provider_get("twilio").send(outbound("sms", to_address="12345"))

    assert (caught.value.code, caught.value.retryable, caught.value.not_accepted) == (21211, False, False)
    assert sim.stats()["twilio"]["sends"] == 0


def test_sendgrid_sends_with_a_bearer_key_and_reads_x_message_id(sim):
    result = provider_get("sendgrid").send(outbound("email", body="<p>Your order <b>shipped</b></p>"))

    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", result.provider_message_id)
    assert result.response["statusCode"] == 202
    assert sim.stats()["sendgrid"]["sends"] == 1


def test_sendgrid_subject_comes_from_the_body_or_the_setting(sim, settings):
    sendgrid = provider_get("sendgrid")
    assert sendgrid.http_call(outbound("email", body="<p>Your order <b>shipped</b></p>")).json["subject"] == (
        "Your order shipped"
    )
    settings.EMAIL_SUBJECT = "A message from Hatch"
    assert sendgrid.http_call(outbound("email")).json["subject"] == "A message from Hatch"


def test_sendgrid_token_travels_in_custom_args_and_a_repeat_is_a_replay(sim):
    sendgrid = provider_get("sendgrid")

    first = sendgrid.send(outbound("email", token="mail-1"))
    again = sendgrid.send(outbound("email", token="mail-1"))

    assert sendgrid.http_call(outbound("email", token="mail-1")).json["custom_args"] == {"idempotency_token": "mail-1"}
    assert again.provider_message_id == first.provider_message_id
    assert (sim.stats()["sendgrid"]["sends"], sim.stats()["sendgrid"]["replays"]) == (1, 1)


def test_sendgrid_wrong_key_is_a_permanent_401(sim, settings):
    settings.SENDGRID_API_KEY = "SG.wrong"

    with pytest.raises(ProviderError) as caught:
        provider_get("sendgrid").send(outbound("email"))

    assert (caught.value.code, caught.value.retryable) == (401, False)


def test_meta_sends_whatsapp_to_the_phone_number_id_and_reads_the_wamid(sim):
    result = provider_get("meta").send(outbound("whatsapp"))

    assert result.provider_message_id.startswith("wamid.")
    assert result.response["contacts"][0]["wa_id"] == "14155550123"
    assert sim.stats()["channels"]["whatsapp"] == 1


def test_meta_sends_instagram_to_the_account_id_and_reads_the_mid(sim):
    result = provider_get("meta").send(outbound("instagram"))

    assert result.provider_message_id.startswith("m_")
    assert sim.stats()["channels"]["instagram"] == 1


def test_meta_repeat_with_the_same_idempotency_key_is_a_replay(sim):
    meta = provider_get("meta")

    first = meta.send(outbound("whatsapp", token="wa-1"))
    again = meta.send(outbound("whatsapp", token="wa-1"))

    assert again.provider_message_id == first.provider_message_id
    assert (sim.stats()["meta"]["sends"], sim.stats()["meta"]["replays"]) == (1, 1)


def test_meta_wrong_token_is_a_permanent_190(sim, settings):
    settings.META_ACCESS_TOKEN = "wrong"

    with pytest.raises(ProviderError) as caught:
        provider_get("meta").send(outbound("whatsapp"))

    assert (caught.value.code, caught.value.retryable) == (190, False)


def test_meta_unknown_phone_number_id_is_a_permanent_100_with_its_subcode(sim, settings):
    settings.WHATSAPP_PHONE_NUMBER_ID = "999"

    with pytest.raises(ProviderError) as caught:
        provider_get("meta").send(outbound("whatsapp"))

    assert caught.value.code == 100
    assert "subcode 33" in caught.value.message
    assert not caught.value.retryable
