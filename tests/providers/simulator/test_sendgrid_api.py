"""The fake SendGrid Mail Send API: answers, errors, idempotency and signed event webhooks."""

import base64
import hashlib
import hmac
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import override_settings

from providers.base import SignedRequest
from providers.registry import provider_get
from providers.simulator.config import Credentials
from tests.providers.simulator.conftest import mail, wait_for

KEY = "sendgrid-key"
WEBHOOK_KEY = "webhook-hmac-key"
EVENTS = "/api/webhooks/email/events"


def test_a_send_is_answered_202_with_an_x_message_id_and_no_body(start_simulator):
    sim = start_simulator(credentials=Credentials(sendgrid_api_key=KEY))

    reply = sim.sendgrid(mail())

    assert reply.status == 202
    assert reply.body == b""
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", reply.headers["x-message-id"])


def test_a_wrong_key_is_sendgrids_401(start_simulator):
    sim = start_simulator(credentials=Credentials(sendgrid_api_key=KEY))

    reply = sim.sendgrid(mail(), key="wrong")

    assert reply.status == 401
    assert reply.json() == {
        "errors": [
            {"message": "The provided authorization grant is invalid, expired, or revoked", "field": None, "help": None}
        ]
    }


def test_missing_fields_are_listed_as_sendgrid_errors(start_simulator):
    reply = start_simulator().sendgrid({"personalizations": [{"to": [{"email": "nope"}]}]})

    assert reply.status == 400
    fields = [error["field"] for error in reply.json()["errors"]]
    assert fields == ["personalizations.0.to.0.email", "from.email", "subject", "content"]
    assert all(error["message"] and "help" in error for error in reply.json()["errors"])


def test_a_body_that_is_not_json_is_a_400(start_simulator):
    sim = start_simulator()

    reply = sim.request(
        "POST",
        "/v3/mail/send",
        body=b"{nope",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )

    assert reply.status == 400
    assert reply.json() == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}


def test_a_body_over_the_size_limit_is_a_413(start_simulator):
    sim = start_simulator(config={"max_email_bytes": 1000})

    reply = sim.sendgrid(mail(content=[{"type": "text/plain", "value": "x" * 2000}]))

    assert reply.status == 413
    assert reply.json()["errors"][0]["message"]
    assert sim.stats()["sendgrid"]["sends"] == 0


def test_the_token_in_custom_args_makes_a_repeat_a_replay(start_simulator):
    sim = start_simulator()
    body = mail(custom_args={"idempotency_token": "email-1"})

    first = sim.sendgrid(body)
    again = sim.sendgrid(body)

    assert again.status == 202
    assert again.headers["x-message-id"] == first.headers["x-message-id"]
    assert sim.stats()["sendgrid"] == {"requests": 2, "sends": 1, "replays": 1, "errors": 0}


def test_events_are_processed_then_delivered_signed_with_the_hmac_key(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(sendgrid_webhook_key=WEBHOOK_KEY), config={"callback_workers": 1})

    message_id = sim.sendgrid(mail(custom_args={"idempotency_token": "t-1", "tenant": "7"})).headers["x-message-id"]

    wait_for(lambda: len(receiver.on(EVENTS)) == 2, "two event batches")
    batches = [request.json() for request in receiver.on(EVENTS)]
    assert [batch[0]["event"] for batch in batches] == ["processed", "delivered"]
    for request, (event,) in zip(receiver.on(EVENTS), batches, strict=True):
        assert event["email"] == "contact@example.com"
        assert event["sg_message_id"].startswith(message_id + ".filter")
        assert event["sg_event_id"]
        assert isinstance(event["timestamp"], int)
        assert (event["idempotency_token"], event["tenant"]) == ("t-1", "7")
        timestamp = request.header("x-twilio-email-event-webhook-timestamp")
        expected = hmac.new(WEBHOOK_KEY.encode(), timestamp.encode() + request.body, hashlib.sha256).hexdigest()
        assert request.header("x-twilio-email-event-webhook-signature") == expected
        signed = SignedRequest(method="POST", url=receiver.url + EVENTS, headers=request.headers, body=request.body)
        with override_settings(SENDGRID_WEBHOOK_VERIFICATION_KEY=[WEBHOOK_KEY], SENDGRID_WEBHOOK_PUBLIC_KEY=[]):
            provider_get("sendgrid").verify(signed)
    assert batches[0][0]["sg_event_id"] != batches[1][0]["sg_event_id"]


def test_events_are_signed_with_ecdsa_when_a_private_key_is_set(start_simulator, receiver):
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    sim = start_simulator(credentials=Credentials(sendgrid_webhook_private_key=pem))

    sim.sendgrid(mail())

    wait_for(lambda: len(receiver.on(EVENTS)) == 2, "two event batches")
    request = receiver.on(EVENTS)[0]
    timestamp = request.header("x-twilio-email-event-webhook-timestamp")
    signature = base64.b64decode(request.header("x-twilio-email-event-webhook-signature"))
    private_key.public_key().verify(signature, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))


def test_a_bounce_ends_a_message_that_is_not_delivered(start_simulator, receiver):
    sim = start_simulator(undelivered_rate=1.0, config={"callback_workers": 1})

    sim.sendgrid(mail())

    wait_for(lambda: len(receiver.on(EVENTS)) == 2, "two event batches")
    assert receiver.on(EVENTS)[-1].json()[0]["event"] == "bounce"
