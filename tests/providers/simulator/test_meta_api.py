"""The fake Meta Graph messages API (WhatsApp Cloud and Instagram) and its signed webhooks."""

import hashlib
import hmac

from providers.simulator.config import Credentials
from tests.providers.simulator.conftest import instagram, wait_for, whatsapp

SECRET = "meta-app-secret"
WEBHOOK = "/api/webhooks/meta"


def meta_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_a_whatsapp_send_is_answered_with_contacts_and_a_wamid(start_simulator):
    sim = start_simulator()

    reply = sim.meta("106540352242922", whatsapp(to="+15551230001"))

    assert reply.status == 200
    body = reply.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+15551230001", "wa_id": "15551230001"}]
    (message,) = body["messages"]
    assert message["id"].startswith("wamid.")
    assert len(message["id"]) > len("wamid.") + 20


def test_an_instagram_send_is_answered_with_recipient_and_message_id(start_simulator):
    reply = start_simulator().meta("17841400000000000", instagram())

    assert reply.status == 200
    assert reply.json()["recipient_id"] == "6543210987654321"
    assert reply.json()["message_id"].startswith("m_")


def test_a_wrong_access_token_is_a_graph_oauth_error(start_simulator):
    sim = start_simulator(credentials=Credentials(meta_access_token="meta-token"))

    reply = sim.meta("1", whatsapp(), token="wrong")

    assert reply.status == 401
    error = reply.json()["error"]
    assert (error["code"], error["type"]) == (190, "OAuthException")
    assert error["message"]
    assert error["fbtrace_id"]


def test_a_phone_number_id_other_than_the_configured_one_does_not_exist(start_simulator):
    sim = start_simulator(credentials=Credentials(whatsapp_phone_number_id="111"))

    reply = sim.meta("222", whatsapp())

    assert reply.status == 400
    assert (reply.json()["error"]["code"], reply.json()["error"]["error_subcode"]) == (100, 33)


def test_a_whatsapp_message_without_text_is_a_graph_parameter_error(start_simulator):
    reply = start_simulator().meta("1", whatsapp(text={}))

    assert (reply.status, reply.json()["error"]["code"]) == (400, 100)


def test_the_idempotency_key_header_makes_a_repeat_a_replay(start_simulator):
    sim = start_simulator()
    headers = {"Idempotency-Key": "wa-1"}

    first = sim.meta("1", whatsapp(), headers=headers)
    again = sim.meta("1", whatsapp(), headers=headers)

    assert again.json() == first.json()
    assert sim.stats()["meta"] == {"requests": 2, "sends": 1, "replays": 1, "errors": 0}


def test_whatsapp_statuses_come_back_as_cloud_api_webhooks_signed_with_the_app_secret(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(meta_app_secret=SECRET), config={"callback_workers": 1})

    wamid = sim.meta("106540352242922", whatsapp()).json()["messages"][0]["id"]

    wait_for(lambda: len(receiver.on(WEBHOOK)) == 2, "two status webhooks")
    statuses = []
    for request in receiver.on(WEBHOOK):
        assert request.header("x-hub-signature-256") == meta_signature(request.body)
        payload = request.json()
        assert payload["object"] == "whatsapp_business_account"
        (change,) = payload["entry"][0]["changes"]
        assert change["field"] == "messages"
        assert change["value"]["metadata"]["phone_number_id"] == "106540352242922"
        (status,) = change["value"]["statuses"]
        assert (status["id"], status["recipient_id"]) == (wamid, "15551230001")
        assert status["timestamp"].isdigit()
        statuses.append(status["status"])
    assert statuses == ["sent", "delivered"]


def test_instagram_deliveries_come_back_signed(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(meta_app_secret=SECRET))

    mid = sim.meta("17841400000000000", instagram()).json()["message_id"]

    request = wait_for(lambda: receiver.on(WEBHOOK), "a delivery webhook")[0]
    assert request.header("x-hub-signature-256") == meta_signature(request.body)
    payload = request.json()
    assert payload["object"] == "instagram"
    (event,) = payload["entry"][0]["messaging"]
    assert event["delivery"]["mids"] == [mid]
    assert event["sender"] == {"id": "6543210987654321"}
    assert event["recipient"] == {"id": "17841400000000000"}


def test_a_failed_whatsapp_message_reports_failed_with_an_error(start_simulator, receiver):
    sim = start_simulator(undelivered_rate=1.0, config={"callback_workers": 1})

    sim.meta("1", whatsapp())

    wait_for(lambda: len(receiver.on(WEBHOOK)) == 2, "two status webhooks")
    (status,) = receiver.on(WEBHOOK)[-1].json()["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["status"] == "failed"
    assert status["errors"][0]["code"] == 131026


def test_seed_004s_post_messages_sends_once_per_client_message_id(start_simulator, receiver):
    sim = start_simulator(credentials=Credentials(meta_app_secret=SECRET))
    body = {"channel": "whatsapp", "to": "user-123", "text": "Merhaba!", "clientMessageId": "c-1"}

    first = sim.post_json("/messages", body)
    again = sim.post_json("/messages", body)

    assert first.status == 200
    assert first.json()["messageId"].startswith("wamid.")
    assert again.json() == first.json()
    assert sim.stats()["meta"] == {"requests": 2, "sends": 1, "replays": 1, "errors": 0}
    wait_for(lambda: len(receiver.on(WEBHOOK)) == 2, "the message's status webhooks")


def test_seed_004s_post_messages_fails_transiently_on_request(start_simulator):
    sim = start_simulator()
    body = {"channel": "instagram", "to": "user-123", "text": "Hi"}

    limited = sim.post_json("/messages", body, {"X-Sim-Fail": "429;retry_after=2"})
    broken = sim.post_json("/messages", body, {"X-Sim-Fail": "500"})
    invalid = sim.post_json("/messages", {"channel": "sms", "to": "x", "text": "Hi"})

    assert (limited.status, limited.headers["retry-after"]) == (429, "2")
    assert broken.status == 500
    assert invalid.status == 400
    assert sim.stats()["meta"]["sends"] == 0
