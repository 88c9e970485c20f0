"""Failure injection: per request (X-Sim-Fail), by mode (POST /control) and by rate."""

import http.client
import json

import pytest

from tests.providers.simulator.conftest import instagram, mail, sms, wait_for, whatsapp

TOKEN = {"I-Twilio-Idempotency-Token": "fault-token"}
CONNECTION_BROKEN = (OSError, http.client.HTTPException)


def test_a_requested_503_is_twilios_error_and_sends_nothing(start_simulator, receiver):
    sim = start_simulator()

    reply = sim.twilio(sms(), headers={"X-Sim-Fail": "503"})

    assert reply.status == 503
    assert reply.json() == {
        "code": 20503,
        "message": "Service Unavailable",
        "more_info": "https://www.twilio.com/docs/errors/20503",
        "status": 503,
    }
    assert sim.stats()["twilio"] == {"requests": 1, "sends": 0, "replays": 0, "errors": 1}


def test_a_requested_429_carries_retry_after_in_each_providers_shape(start_simulator):
    sim = start_simulator()
    fail = {"X-Sim-Fail": "429;retry_after=7"}

    twilio = sim.twilio(sms(), headers=fail)
    sendgrid = sim.sendgrid(mail(), headers=fail)
    whatsapp_reply = sim.meta("1", whatsapp(), headers=fail)
    instagram_reply = sim.meta("2", instagram(), headers=fail)

    for reply in (twilio, sendgrid, whatsapp_reply, instagram_reply):
        assert reply.status == 429
        assert reply.headers["retry-after"] == "7"
    assert twilio.json()["code"] == 20429
    assert sendgrid.json()["errors"][0]["message"] == "too many requests"
    assert whatsapp_reply.json()["error"]["code"] == 80007
    assert instagram_reply.json()["error"]["code"] == 4
    assert {
        name: counts["sends"] for name, counts in sim.stats().items() if name in ("twilio", "sendgrid", "meta")
    } == {
        "twilio": 0,
        "sendgrid": 0,
        "meta": 0,
    }


def test_a_requested_error_code_is_used_in_the_body(start_simulator):
    sim = start_simulator()

    twilio = sim.twilio(sms(), headers={"X-Sim-Fail": "400;code=21610"})
    meta = sim.meta("1", whatsapp(), headers={"X-Sim-Fail": "400"})
    meta_500 = sim.meta("1", whatsapp(), headers={"X-Sim-Fail": "500"})

    assert (twilio.status, twilio.json()["code"]) == (400, 21610)
    assert (meta.status, meta.json()["error"]["code"]) == (400, 131030)
    assert (meta_500.status, meta_500.json()["error"]["code"]) == (500, 131000)


def test_a_timeout_accepts_the_message_and_the_retry_is_a_replay(start_simulator, receiver):
    sim = start_simulator()

    with pytest.raises(CONNECTION_BROKEN):
        sim.twilio(sms(), headers={**TOKEN, "X-Sim-Fail": "timeout;seconds=60"}, timeout=0.5)
    retry = sim.twilio(sms(), headers=TOKEN)

    assert retry.status == 201
    assert sim.stats()["twilio"]["sends"] == 1
    assert sim.stats()["twilio"]["replays"] == 1
    wait_for(lambda: len(receiver.on("/api/webhooks/sms/status")) == 3, "callbacks of the one message")
    assert {r.form()["MessageSid"] for r in receiver.on("/api/webhooks/sms/status")} == {retry.json()["sid"]}


def test_a_reset_breaks_the_answer_after_accepting(start_simulator):
    sim = start_simulator()

    with pytest.raises(CONNECTION_BROKEN):
        sim.twilio(sms(), headers={**TOKEN, "X-Sim-Fail": "reset"})
    retry = sim.twilio(sms(), headers=TOKEN)

    assert retry.status == 201
    assert (sim.stats()["twilio"]["sends"], sim.stats()["twilio"]["replays"]) == (1, 1)


def test_a_reset_breaks_even_an_empty_sendgrid_answer(start_simulator):
    sim = start_simulator()

    with pytest.raises(CONNECTION_BROKEN):
        sim.sendgrid(mail(), headers={"X-Sim-Fail": "reset"})


def test_a_reset_before_answering_accepts_nothing(start_simulator):
    sim = start_simulator()

    with pytest.raises(CONNECTION_BROKEN):
        sim.meta("1", whatsapp(), headers={"X-Sim-Fail": "reset-before"})

    assert sim.stats()["meta"]["sends"] == 0


def test_invalid_json_is_a_success_status_with_a_body_that_does_not_parse(start_simulator):
    sim = start_simulator()

    reply = sim.twilio(sms(), headers={"X-Sim-Fail": "invalid-json"})

    assert reply.status == 201
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)
    assert sim.stats()["twilio"]["sends"] == 1


def test_invalid_json_with_an_error_status_accepts_nothing(start_simulator):
    sim = start_simulator()

    reply = sim.meta("1", whatsapp(), headers={"X-Sim-Fail": "invalid-json;status=502"})

    assert reply.status == 502
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)
    assert sim.stats()["meta"]["sends"] == 0


def test_an_unknown_fault_is_a_400_naming_the_header(start_simulator):
    reply = start_simulator().twilio(sms(), headers={"X-Sim-Fail": "explode"})

    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_fault"
    assert "X-Sim-Fail" in reply.json()["error"]["message"]


def test_down_mode_refuses_every_send_until_set_back(start_simulator):
    sim = start_simulator()

    sim.post_json("/control", {"mode": "down"})
    down = [sim.twilio(sms()), sim.sendgrid(mail()), sim.meta("1", whatsapp())]
    sim.post_json("/control", {"mode": "normal"})
    back = sim.twilio(sms())

    assert [reply.status for reply in down] == [503, 503, 503]
    assert down[0].json()["code"] == 20503
    assert down[0].headers["retry-after"] == "1"
    assert back.status == 201


def test_a_mode_with_seconds_returns_to_normal_by_itself(start_simulator):
    sim = start_simulator()

    control = sim.post_json("/control", {"mode": "ratelimit", "retry_after": 4, "seconds": 0.5})

    assert control.json()["mode"] == "ratelimit"
    limited = sim.twilio(sms())
    assert (limited.status, limited.headers["retry-after"]) == (429, "4")
    wait_for(lambda: sim.request("GET", "/control").json()["mode"] == "normal", "the mode to expire")
    assert sim.twilio(sms()).status == 201


def test_reset_mode_drops_connections(start_simulator):
    sim = start_simulator()
    sim.post_json("/control", {"mode": "reset"})

    with pytest.raises(CONNECTION_BROKEN):
        sim.sendgrid(mail())


def test_a_failure_rate_of_one_fails_every_send(start_simulator):
    sim = start_simulator(failure_rate=1.0)

    replies = [sim.twilio(sms()) for _ in range(3)]

    assert [reply.status for reply in replies] == [503, 503, 503]
    assert sim.stats()["twilio"]["sends"] == 0


def test_control_refuses_unknown_settings_and_bad_values(start_simulator):
    sim = start_simulator()

    unknown = sim.post_json("/control", {"volume": 11})
    bad_mode = sim.post_json("/control", {"mode": "sideways"})
    bad_rate = sim.post_json("/control", {"failure_rate": 2})

    assert [reply.status for reply in (unknown, bad_mode, bad_rate)] == [400, 400, 400]
    assert all(reply.json()["error"]["code"] == "validation_error" for reply in (unknown, bad_mode, bad_rate))
    assert sim.request("GET", "/control").json()["mode"] == "normal"


def test_control_changes_latency_and_callback_rates(start_simulator):
    sim = start_simulator()

    reply = sim.post_json("/control", {"latency_ms": "5-10", "duplicate_rate": 0.5, "callbacks": False})

    assert reply.status == 200
    assert reply.json()["latency_ms"] == [5, 10]
    assert reply.json()["duplicate_rate"] == 0.5
    assert reply.json()["callbacks"] is False
