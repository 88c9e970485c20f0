"""PROVIDER_MODE=http through the API and at start-up: sends answer as documented over HTTP, the
mocks' failure switch is refused, and missing credentials stop the service."""

import logging
import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks

from messaging.models import Message
from messaging.outbox import outbox_deliver_now
from providers.http import simulator_environment
from tests import payloads
from tests.ports import free_port
from tests.providers.http.conftest import inject_fault, point_at
from tests.settings_env import PRODUCTION_ENV, run_with_settings

pytestmark = pytest.mark.django_db(transaction=True)


def post(api, path, body):
    return api.post(path, body, format="json")


def test_every_channel_sends_over_http_and_the_simulator_counts_it(api, sim):
    answers = [
        post(api, "/api/messages/sms", payloads.sms()),
        post(api, "/api/messages/email", payloads.email()),
        post(api, "/api/messages", {"channel": "whatsapp", "to": "+14155550123", "body": "Hi"}),
        post(api, "/api/messages", {"channel": "instagram", "to": "6543210987654321", "body": "Hi"}),
    ]

    assert [answer.status_code for answer in answers] == [201, 201, 201, 201]
    stats = sim.stats()
    assert (stats["twilio"]["sends"], stats["sendgrid"]["sends"], stats["meta"]["sends"]) == (1, 1, 2)
    assert stats["channels"] == {"sms": 1, "email": 1, "whatsapp": 1, "instagram": 1}


def test_a_provider_that_cannot_be_reached_answers_202_pending(api, http_settings):
    point_at(http_settings, f"http://127.0.0.1:{free_port()}")

    answer = post(api, "/api/messages/sms", payloads.sms())

    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "pending"
    assert body["error"]["code"] == "connection_refused"
    assert body["next_attempt_at"] is not None


def test_a_permanent_refusal_answers_502_failed_with_the_providers_code(api, sim):
    inject_fault("twilio", "400;code=21610")

    answer = post(api, "/api/messages/sms", payloads.sms())

    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == 21610
    assert Message.objects.get().status == "failed"


def test_an_unknown_outcome_answers_202_pending_and_the_retry_is_a_replay(api, sim):
    inject_fault("twilio", "timeout;seconds=3")

    answer = post(api, "/api/messages/sms", payloads.sms())

    assert (answer.status_code, answer.json()["error"]["code"]) == (202, "timeout")
    inject_fault("twilio", None)
    [retried] = outbox_deliver_now(message_ids=[answer.json()["id"]])
    assert retried.status == "sent"
    assert (sim.stats()["twilio"]["sends"], sim.stats()["twilio"]["replays"]) == (1, 1)


def test_force_error_is_refused_in_http_mode(api, sim):
    answer = post(api, "/api/messages/sms", payloads.sms(_forceError={"code": 503}))

    assert answer.status_code == 400
    assert "_forceError" in answer.json()["error"]["details"]
    assert sim.stats()["twilio"]["requests"] == 0


def test_http_mode_without_credentials_fails_the_start_up_check(settings):
    settings.PROVIDER_MODE = "http"
    settings.SENDGRID_API_KEY = None
    settings.META_ACCESS_TOKEN = None

    errors = [error for error in run_checks() if error.id == "providers.E001"]

    assert len(errors) == 1
    assert "SENDGRID_API_KEY" in errors[0].msg
    assert "META_ACCESS_TOKEN" in errors[0].msg


_PROVIDER_CHECKS = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings.base'; django.setup();"
    "from django.core.checks import run_checks;"
    "print(sorted(e.id for e in run_checks() if e.id.startswith('providers.')))"
)


@pytest.mark.parametrize("missing", [None, "TWILIO_ACCOUNT_SID"])
def test_the_simulator_environment_passes_the_start_up_check(missing):
    """What bench/run.py gives the service and the simulator starts HTTP mode: every credential the
    check asks for is in it (taking one away fails the check, so the check did run)."""
    env = {**_base_env(), **simulator_environment("http://127.0.0.1:4000")}
    env.pop(missing or "", None)
    output = subprocess.run(
        [sys.executable, "-c", _PROVIDER_CHECKS], env=env, capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == ("['providers.E001']" if missing else "[]")


def test_mock_mode_needs_no_credentials(settings):
    settings.PROVIDER_MODE = "mock"
    settings.SENDGRID_API_KEY = None

    assert not [error for error in run_checks() if error.id.startswith("providers.")]


def test_a_failover_chain_is_read_from_the_environment():
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings.base';"
        "from django.conf import settings; print(settings.MESSAGE_PROVIDERS)"
    )
    env = {"SMS_PROVIDERS": "twilio, tests.providers.http.backup.BackupTwilio", "EMAIL_PROVIDER": "sendgrid"}
    output = subprocess.run(
        [sys.executable, "-c", code], env={**_base_env(), **env}, capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == ("{'sms': ['twilio', 'tests.providers.http.backup.BackupTwilio'], 'email': ['sendgrid']}")


def _base_env():
    return {key: value for key, value in os.environ.items() if not key.endswith(("_PROVIDER", "_PROVIDERS"))}


def test_a_provider_request_writes_no_line_of_its_own_at_info(api, sim, caplog):
    """httpx's "HTTP Request: POST ..." line per call is left out at INFO; the request's own line is not."""
    with caplog.at_level(logging.INFO):
        answer = post(api, "/api/messages/sms", payloads.sms())

    names = [record.name for record in caplog.records]
    assert answer.status_code == 201
    assert sim.stats()["twilio"]["sends"] == 1
    assert "requests" in names  # the service's own line for the request, at INFO
    assert [name for name in names if name.startswith("httpx")] == []


@pytest.mark.parametrize(("log_level", "httpx_level"), [("INFO", "WARNING"), ("DEBUG", "DEBUG")])
def test_httpx_logs_each_request_only_at_log_level_debug(log_level, httpx_level):
    started = run_with_settings(
        "config.settings.production",
        {**PRODUCTION_ENV, "LOG_LEVEL": log_level},
        "-c",
        "import django, logging; django.setup();"
        " print(logging.getLevelName(logging.getLogger('httpx').getEffectiveLevel()))",
    )

    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == httpx_level
