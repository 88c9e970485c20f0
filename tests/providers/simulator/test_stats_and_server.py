"""GET /stats, POST /stats/reset, routing, keep-alive, concurrency, and the management command."""

import base64
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from providers.simulator.config import Credentials
from tests.ports import free_port
from tests.providers.simulator.conftest import mail, sms, wait_for, whatsapp

ROOT = Path(__file__).resolve().parents[3]


def test_stats_count_requests_sends_and_replays_per_provider(start_simulator):
    sim = start_simulator()
    sim.twilio(sms(), headers={"I-Twilio-Idempotency-Token": "a"})
    sim.twilio(sms(), headers={"I-Twilio-Idempotency-Token": "a"})
    sim.sendgrid(mail())
    sim.meta("1", whatsapp())
    sim.meta("1", whatsapp(), headers={"X-Sim-Fail": "500"})

    stats = sim.stats()

    assert stats["twilio"] == {"requests": 2, "sends": 1, "replays": 1, "errors": 0}
    assert stats["sendgrid"] == {"requests": 1, "sends": 1, "replays": 0, "errors": 0}
    assert stats["meta"] == {"requests": 2, "sends": 1, "replays": 0, "errors": 1}
    assert stats["channels"] == {"sms": 1, "email": 1, "whatsapp": 1}


def test_reset_zeroes_the_counts_but_remembers_tokens_unless_asked(start_simulator):
    sim = start_simulator(callbacks=False)
    token = {"I-Twilio-Idempotency-Token": "a"}
    sim.twilio(sms(), headers=token)

    reset = sim.request("POST", "/stats/reset")
    sim.twilio(sms(), headers=token)
    after_reset = sim.stats()["twilio"]
    sim.request("POST", "/stats/reset?forget=true")
    sim.twilio(sms(), headers=token)

    assert reset.json()["twilio"] == {"requests": 0, "sends": 0, "replays": 0, "errors": 0}
    assert after_reset == {"requests": 1, "sends": 0, "replays": 1, "errors": 0}
    assert sim.stats()["twilio"] == {"requests": 1, "sends": 1, "replays": 0, "errors": 0}


def test_unknown_paths_and_methods_answer_in_the_error_envelope(start_simulator):
    sim = start_simulator()

    missing = sim.request("GET", "/nowhere")
    wrong_method = sim.request("GET", "/v3/mail/send")

    assert (missing.status, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert sim.request("GET", "/health").json() == {"status": "ok"}


def test_one_keep_alive_connection_carries_many_sends(start_simulator):
    sim = start_simulator(callbacks=False)
    host, port = sim.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}

    statuses = []
    for _ in range(20):
        connection.request("POST", "/v3/mail/send", body=json.dumps(mail()), headers=headers)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()

    assert statuses == [202] * 20
    assert sim.stats()["sendgrid"]["sends"] == 20


def test_every_answer_on_a_kept_alive_connection_leaves_in_one_write(start_simulator):
    """Headers and body go out together. Written apart, Nagle's algorithm held the body back until the
    client acknowledged the headers, which a kept-alive connection's client delays by up to 40 ms."""
    sim = start_simulator(callbacks=False)
    host, port = sim.url.removeprefix("http://").split(":")
    request = b"GET /health HTTP/1.1\r\nHost: simulator\r\n\r\n"

    first_reads = []
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        for _ in range(10):
            connection.sendall(request)
            first_reads.append(connection.recv(65536))

    assert all(read.startswith(b"HTTP/1.1 200 ") for read in first_reads)
    assert [read.split(b"\r\n\r\n", 1)[1] for read in first_reads] == [b'{"status": "ok"}'] * 10


def test_a_client_expecting_100_continue_gets_it_before_sending_the_body(start_simulator):
    sim = start_simulator(callbacks=False)
    host, port = sim.url.removeprefix("http://").split(":")
    body = json.dumps(mail()).encode()
    head = (
        "POST /v3/mail/send HTTP/1.1\r\nHost: simulator\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )

    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(head.encode())
        interim = connection.recv(65536)  # times out if the 100 stays in the server's buffer
        connection.sendall(body)
        final = connection.recv(65536)

    assert interim.startswith(b"HTTP/1.1 100 ")
    assert final.startswith(b"HTTP/1.1 202 ")
    assert sim.stats()["sendgrid"]["sends"] == 1


def test_concurrent_sends_with_one_token_send_once(start_simulator):
    sim = start_simulator(callbacks=False, latency_ms=(0, 20))

    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda _: sim.meta("1", whatsapp(), headers={"Idempotency-Key": "same"}), range(40)))

    assert {reply.json()["messages"][0]["id"] for reply in replies} == {replies[0].json()["messages"][0]["id"]}
    assert sim.stats()["meta"] == {"requests": 40, "sends": 1, "replays": 39, "errors": 0}


def test_the_management_command_serves_with_the_services_credentials_and_stops_on_sigterm(receiver):
    port = free_port()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "right-token,older-token",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_provider_sim", "--port", str(port), "--callback-base-url", receiver.url],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answer(token: str):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                credentials = base64.b64encode(f"{'AC' + '1' * 32}:{token}".encode()).decode()
                connection.request(
                    "POST",
                    f"/2010-04-01/Accounts/{'AC' + '1' * 32}/Messages.json",
                    body="To=%2B15551230001&From=%2B15559870002&Body=hi",
                    headers={
                        "Authorization": f"Basic {credentials}",
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                )
                return connection.getresponse().status
            except OSError:
                return None

        assert wait_for(lambda: answer("wrong-token"), "the simulator to listen") == 401
        assert answer("right-token") == 201
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"Provider simulator on http://127.0.0.1:{port}" in stdout
    assert "TWILIO_AUTH_TOKEN" in stdout


def test_a_line_per_accepted_request_is_written_at_debug_only(start_simulator, caplog):
    """Three outbox workers send the simulator over a thousand calls a second: at INFO it writes no
    line per accepted call (it cost about a tenth of its CPU per call), at DEBUG one each; an error
    answer keeps its line at INFO."""
    sim = start_simulator(credentials=Credentials(twilio_account_sid="AC" + "1" * 32, twilio_auth_token="right"))

    with caplog.at_level(logging.INFO, logger="providers.simulator"):
        assert sim.twilio(sms(), token="right").status == 201
        assert sim.twilio(sms(), token="wrong").status == 401
    [refused] = [record for record in caplog.records if "Messages.json" in record.getMessage()]
    assert refused.levelno == logging.INFO
    assert refused.getMessage().endswith(" 401 -")
    caplog.clear()

    with caplog.at_level(logging.DEBUG, logger="providers.simulator"):
        assert sim.twilio(sms(Body="second"), token="right").status == 201
    [line] = [record for record in caplog.records if "Messages.json" in record.getMessage()]
    assert line.levelno == logging.DEBUG
    assert '"POST /2010-04-01/Accounts/' in line.getMessage()
    assert line.getMessage().endswith(" 201 -")
