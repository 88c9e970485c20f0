"""Structured logs with request ids, and Prometheus metrics, as an operator reads them."""

import io
import json
import logging
import re
from collections import Counter

import pytest
from django.conf import settings as django_settings

from apikeys.services import api_key_create
from core.logging import ContextFilter
from messaging.outbox import OutboxWorker
from tests import payloads
from tests.factories import OutboxMessageFactory
from tests.settings_env import PRODUCTION_ENV, run_with_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines():
    """What the configured console handler writes (settings.LOGGING's json formatter and context
    filter), captured; returns a function giving the lines written so far, parsed."""
    formatter_config = dict(django_settings.LOGGING["formatters"]["json"])
    factory = formatter_config.pop("()")
    module, _, name = factory.rpartition(".")
    formatter = getattr(__import__(module, fromlist=[name]), name)(**formatter_config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_client_request_id_is_honoured_and_returned(client):
    response = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert response["X-Request-ID"] == "trace-42"


def test_a_request_without_a_usable_id_gets_a_new_one(client):
    first = client.get("/health", headers={"X-Request-ID": "not an id\twith spaces"})["X-Request-ID"]
    second = client.get("/health")["X-Request-ID"]
    assert len(first) == 32
    assert first != second


def test_each_request_is_one_json_line_with_id_route_status_duration_and_key_prefix(client, settings, json_lines):
    settings.API_AUTH_REQUIRED = True
    api_key, secret = api_key_create(name="ops")
    client.get("/api/conversations", headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "req-1"})

    lines = [line for line in json_lines() if line["logger"] == "requests"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-1"
    assert (line["method"], line["route"], line["status"]) == ("GET", "conversation-list", 200)
    assert line["duration_ms"] >= 0
    assert line["api_key_prefix"] == api_key.prefix
    assert secret not in json.dumps(lines)


def test_the_request_line_says_how_long_the_request_waited_for_its_turn(client, json_lines):
    from core.admission import WAIT_KEY

    client.get("/health", **{WAIT_KEY: 0.01234})  # as core.admission.admitted leaves it in the environ
    client.get("/health")  # a process that runs its requests at once: no such field
    waited, at_once = [line for line in json_lines() if line["logger"] == "requests"]
    assert waited["turn_wait_ms"] == 12.3
    assert "turn_wait_ms" not in at_once


def test_every_line_logged_while_serving_a_request_carries_its_id(client, json_lines):
    # A transient provider failure is logged by the send service during the request.
    client.post(
        "/api/messages/sms",
        payloads.sms(_forceError={"code": 503, "times": 1}),
        content_type="application/json",
        headers={"X-Request-ID": "req-2"},
    )
    lines = json_lines()
    assert any(line["logger"] == "messaging.services" for line in lines)
    assert {line.get("request_id") for line in lines} == {"req-2"}


def test_the_workers_lines_carry_the_message_id_and_attempt(json_lines):
    logging.getLogger().setLevel(logging.DEBUG)  # one line per attempt at DEBUG
    message = OutboxMessageFactory(attempts=1)
    OutboxWorker(concurrency=1, once=True).run()

    delivery = [line for line in json_lines() if line["logger"] == "messaging.outbox" and "message_id" in line]
    assert delivery
    assert {(line["message_id"], line["attempt"]) for line in delivery} == {(message.pk, 2)}


def test_at_info_the_worker_logs_a_line_per_batch_and_each_failure(json_lines):
    sent = OutboxMessageFactory.create_batch(3)
    failing = OutboxMessageFactory(metadata={"force_error": {"code": 503, "times": 1}})
    OutboxWorker(concurrency=8, once=True, due_within=0).run()

    lines = json_lines()
    batches = [
        re.fullmatch(r"Recorded (\d+) attempt\(s\): (.+); slowest \d+ ms", line["message"])
        for line in lines
        if line["logger"] == "messaging.outbox" and line["message"].startswith("Recorded")
    ]
    outcomes: Counter = Counter()
    for batch in batches:
        assert batch is not None
        for part in batch[2].split(", "):
            count, status = part.split(" ")
            outcomes[status] += int(count)
    assert sum(int(batch[1]) for batch in batches if batch) == 4
    assert outcomes == {"sent": 3, "pending": 1}
    assert not [line for line in lines if line["logger"] == "messaging.outbox" and "message_id" in line]
    failures = [line for line in lines if line["logger"] == "messaging.services" and "failed" in line["message"]]
    assert [(line["message_id"], line["attempt"]) for line in failures] == [(failing.pk, 1)]
    assert all(message.pk not in {line.get("message_id") for line in lines} for message in sent)


def test_metrics_count_requests_by_route_and_status_and_show_the_outbox(client):
    client.get("/api/conversations")
    OutboxMessageFactory()

    body = client.get("/metrics").content.decode()

    assert 'http_requests_total{method="GET",route="conversation-list",status="200"}' in body
    assert "http_request_duration_seconds_bucket" in body
    assert "messaging_outbox_pending 1.0" in body
    assert "messaging_outbox_oldest_due_age_seconds" in body


def test_metrics_count_a_method_nobody_defined_as_other(client):
    def others(body):
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("http_requests_total{") and 'method="other"' in line
        )

    before = others(client.get("/metrics").content.decode())
    client.generic("FROBNICATE-7f3a", "/no-such-page/")
    client.generic("FROBNICATE-91bc", "/no-such-page/")

    body = client.get("/metrics").content.decode()

    assert "FROBNICATE" not in body
    assert others(body) == before + 2


def test_metrics_count_sends_and_rate_limit_rejections(client, settings):
    settings.SMS_RATE_LIMIT = (1, 86400)
    client.post("/api/messages/sms", payloads.sms(), content_type="application/json")
    client.post("/api/messages/sms", payloads.sms(), content_type="application/json")

    body = client.get("/metrics").content.decode()

    assert 'messaging_sends_total{channel="sms",outcome="sent",provider="twilio"}' in body
    assert 'rate_limit_rejections_total{route="message-sms"}' in body


def test_metrics_want_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


def test_metrics_are_closed_without_a_token_when_not_public(client, settings):
    settings.METRICS_TOKEN = None
    settings.METRICS_PUBLIC = False
    assert client.get("/metrics").status_code == 404


def test_production_closes_metrics_unless_a_token_or_public_bind_is_configured():
    program = "import django; django.setup(); from django.conf import settings; print(settings.METRICS_PUBLIC)"
    closed = run_with_settings("config.settings.production", PRODUCTION_ENV, "-c", program)
    opened = run_with_settings(
        "config.settings.production", {**PRODUCTION_ENV, "METRICS_PUBLIC": "true"}, "-c", program
    )
    assert closed.stdout.strip() == "False", closed.stderr
    assert opened.stdout.strip() == "True", opened.stderr
