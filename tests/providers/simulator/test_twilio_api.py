"""The fake Twilio Messages API: answers, errors, idempotency and signed status callbacks."""

import base64
import hashlib
import hmac
import re
from email.utils import parsedate_to_datetime

from django.test import override_settings

from providers.base import SignedRequest
from providers.registry import provider_get
from providers.simulator.config import Credentials
from tests.providers.simulator.conftest import sms, wait_for

SID = "AC" + "1" * 32
TOKEN = "twilio-token"
CREDENTIALS = Credentials(twilio_account_sid=SID, twilio_auth_token=TOKEN)


def twilio_signature(url: str, params: dict, token: str) -> str:
    payload = url + "".join(name + value for name, value in sorted(params.items()))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def test_a_send_is_answered_201_with_twilios_message_resource(start_simulator):
    sim = start_simulator(credentials=CREDENTIALS)

    reply = sim.twilio(sms(Body="Hello there"))

    assert reply.status == 201
    message = reply.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", message["sid"])
    assert message["account_sid"] == SID
    assert message["status"] == "queued"
    assert message["to"] == "+15551230001"
    assert message["from"] == "+15559870002"
    assert message["body"] == "Hello there"
    assert message["num_segments"] == "1"
    assert message["num_media"] == "0"
    assert message["price"] is None
    assert message["direction"] == "outbound-api"
    assert parsedate_to_datetime(message["date_created"]).tzinfo is not None
    assert message["uri"] == f"/2010-04-01/Accounts/{SID}/Messages/{message['sid']}.json"


def test_media_urls_make_an_mms(start_simulator):
    sim = start_simulator()

    reply = sim.twilio([*sms().items(), ("MediaUrl", "https://e.com/a.jpg"), ("MediaUrl", "https://e.com/b.jpg")])

    assert reply.status == 201
    assert re.fullmatch(r"MM[0-9a-f]{32}", reply.json()["sid"])
    assert reply.json()["num_media"] == "2"


def test_a_long_body_counts_its_segments(start_simulator):
    reply = start_simulator().twilio(sms(Body="x" * 161))

    assert reply.json()["num_segments"] == "2"


def test_a_wrong_auth_token_is_twilios_401(start_simulator):
    sim = start_simulator(credentials=CREDENTIALS)

    reply = sim.twilio(sms(), token="wrong")

    assert reply.status == 401
    assert reply.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert sim.stats()["twilio"] == {"requests": 1, "sends": 0, "replays": 0, "errors": 1}


def test_no_credentials_at_all_is_a_401_even_when_any_are_accepted(start_simulator):
    sim = start_simulator()

    reply = sim.request("POST", f"/2010-04-01/Accounts/{SID}/Messages.json", body=b"To=%2B15551230001")

    assert reply.status == 401
    assert reply.json()["code"] == 20003


def test_an_invalid_to_number_is_error_21211(start_simulator):
    reply = start_simulator().twilio(sms(To="not-a-number"))

    assert reply.status == 400
    body = reply.json()
    assert body["code"] == 21211
    assert body["status"] == 400
    assert body["more_info"] == "https://www.twilio.com/docs/errors/21211"


def test_a_message_without_body_or_media_is_error_21602(start_simulator):
    reply = start_simulator().twilio(sms(Body=""))

    assert (reply.status, reply.json()["code"]) == (400, 21602)


def test_the_same_idempotency_token_gets_the_original_answer_and_sends_once(start_simulator, receiver):
    sim = start_simulator()
    headers = {"I-Twilio-Idempotency-Token": "token-1"}

    first = sim.twilio(sms(), headers=headers)
    again = sim.twilio(sms(), headers=headers)
    other = sim.twilio(sms(), headers={"I-Twilio-Idempotency-Token": "token-2"})

    assert again.status == 201
    assert again.json() == first.json()
    assert other.json()["sid"] != first.json()["sid"]
    assert sim.stats()["twilio"] == {"requests": 3, "sends": 2, "replays": 1, "errors": 0}
    # Only the two real sends get status callbacks (3 each: queued, sent, delivered).
    wait_for(lambda: len(receiver.on("/api/webhooks/sms/status")) >= 6, "six status callbacks")
    sids = {request.form()["MessageSid"] for request in receiver.on("/api/webhooks/sms/status")}
    assert sids == {first.json()["sid"], other.json()["sid"]}


def test_status_callbacks_are_signed_form_posts_ending_delivered(start_simulator, receiver):
    sim = start_simulator(credentials=CREDENTIALS, config={"callback_workers": 1})

    sid = sim.twilio(sms()).json()["sid"]

    wait_for(lambda: len(receiver.on("/api/webhooks/sms/status")) == 3, "three status callbacks")
    callbacks = receiver.on("/api/webhooks/sms/status")
    assert [callback.form()["MessageStatus"] for callback in callbacks] == ["queued", "sent", "delivered"]
    url = receiver.url + "/api/webhooks/sms/status"
    for callback in callbacks:
        fields = callback.form()
        assert callback.header("content-type") == "application/x-www-form-urlencoded"
        assert fields["MessageSid"] == fields["SmsSid"] == sid
        assert fields["AccountSid"] == SID
        assert fields["To"] == "+15551230001"
        assert callback.header("x-twilio-signature") == twilio_signature(url, fields, TOKEN)
        # The service's own verifier accepts it too.
        signed = SignedRequest(
            method="POST",
            url=url,
            headers=callback.headers,
            body=callback.body,
            content_type=callback.header("content-type"),
        )
        with override_settings(TWILIO_AUTH_TOKEN=[TOKEN]):
            provider_get("twilio").verify(signed)
    # Counted once the receiver's answer is read, which can be just after the receiver has it.
    wait_for(lambda: sim.stats()["callbacks"]["delivered"] == 3, "three callbacks counted delivered")


def test_the_status_callback_url_of_the_message_is_used_and_signed(start_simulator, receiver):
    sim = start_simulator(credentials=CREDENTIALS)
    callback_url = receiver.url + "/hooks/twilio?tenant=7"

    sim.twilio(sms(StatusCallback=callback_url))

    wait_for(lambda: len(receiver.on("/hooks/twilio")) == 3, "callbacks to the StatusCallback URL")
    for callback in receiver.on("/hooks/twilio"):
        assert callback.query == "tenant=7"
        assert callback.header("x-twilio-signature") == twilio_signature(callback_url, callback.form(), TOKEN)
    assert receiver.on("/api/webhooks/sms/status") == []


def test_without_a_configured_token_callbacks_are_signed_with_the_callers_token(start_simulator, receiver):
    sim = start_simulator()

    sim.twilio(sms(), token="callers-token")

    wait_for(lambda: len(receiver.on("/api/webhooks/sms/status")) == 3, "status callbacks")
    callback = receiver.on("/api/webhooks/sms/status")[0]
    url = receiver.url + "/api/webhooks/sms/status"
    assert callback.header("x-twilio-signature") == twilio_signature(url, callback.form(), "callers-token")


def test_an_undelivered_message_ends_undelivered_with_an_error_code(start_simulator, receiver):
    sim = start_simulator(undelivered_rate=1.0, config={"callback_workers": 1})

    sim.twilio(sms())

    wait_for(lambda: len(receiver.on("/api/webhooks/sms/status")) == 3, "status callbacks")
    last = receiver.on("/api/webhooks/sms/status")[-1].form()
    assert (last["MessageStatus"], last["ErrorCode"]) == ("undelivered", "30003")
