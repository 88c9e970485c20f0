"""Rate limits on the send endpoints: headers, 429s, keys, Redis, Redis down, and two processes sharing one limit.

Multi-request tests use one-day windows, so no window ends while a test runs; counters start empty in
every test (in-memory ones are cleared by tests/conftest.py, the Redis database is flushed here).
"""

import json
import logging
import os
import select
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import RequestFactory

from apikeys.services import api_key_create
from config.env import Env
from conversations.models import Conversation
from core.redis_cache import _LeanConnection
from messaging import ratelimits
from messaging.models import Message
from tests import payloads
from tests.ports import free_port

pytestmark = pytest.mark.django_db

DAY = 86400
#: Logical database 14 by default; override with TEST_REDIS_URL. The tests flush that database.
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def send(api, channel, body, **headers):
    return api.post(f"/api/messages/{channel}", body, format="json", headers=headers)


def send_sms(api, sender="+12016661234", **headers):
    return send(api, "sms", payloads.sms(**{"from": sender}), **headers)


def limit_headers(response):
    return {name: response.headers.get(name) for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining")}


def redis_cache(url):
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "messaging",
        "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
    }


@pytest.fixture(autouse=True)
def _warnings_not_throttled(monkeypatch):
    monkeypatch.setattr(ratelimits, "_last_unavailable_warning", None)


@pytest.fixture
def provider_calls(monkeypatch):
    from providers.sendgrid import SendGridProvider as MockSendGridProvider
    from providers.twilio import TwilioProvider as MockTwilioProvider

    calls = []
    for provider_class in (MockTwilioProvider, MockSendGridProvider):
        original = provider_class.send

        def spy(self, message, _original=original):
            calls.append(message)
            return _original(self, message)

        monkeypatch.setattr(provider_class, "send", spy)
    return calls


@pytest.fixture
def redis_db():
    """Redis database 14, empty, as the "ratelimit" cache's store. The suite needs Redis (as it needs
    PostgreSQL): a missing one fails these tests rather than skipping what they prove."""
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_TEST_URL} ({exc}); start one (.ci/run does)")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_limits(settings, redis_db):
    settings.CACHES = {**settings.CACHES, "ratelimit": redis_cache(REDIS_TEST_URL)}
    return redis_db


# --- Headers and the 429 ------------------------------------------------------------------------


def test_every_send_answer_carries_the_limit_the_remainder_and_the_reset_time(api):
    before = int(time.time())

    response = send_sms(api)

    assert response.status_code == 201
    assert limit_headers(response) == {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"}
    # Default SMS limit 100/m: the window ends within the minute.
    assert before < int(response.headers["X-RateLimit-Reset"]) <= int(time.time()) + 60
    assert "Retry-After" not in response.headers


def test_the_limit_trips_after_n_sends_with_429_retry_after_and_the_error_envelope(api, settings):
    settings.SMS_RATE_LIMIT = (3, DAY)

    allowed = [send_sms(api) for _ in range(3)]
    refused = send_sms(api)

    assert [r.status_code for r in allowed] == [201, 201, 201]
    assert [r.headers["X-RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= DAY
    assert refused.json() == {
        "error": {
            "code": "rate_limited",
            "message": (
                f"Too many SMS/MMS messages for this sender: at most 3 every {DAY} seconds. "
                f"Retry in {retry_after} seconds."
            ),
            "details": {"limit": 3, "window_seconds": DAY, "retry_after": retry_after},
        }
    }
    assert limit_headers(refused) == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0"}
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert abs(reset - (int(time.time()) + retry_after)) <= 1
    assert {r.headers["X-RateLimit-Reset"] for r in allowed} == {str(reset)}


def test_a_429_stores_nothing_and_never_calls_the_provider(api, settings, provider_calls):
    settings.SMS_RATE_LIMIT = (1, DAY)
    assert send_sms(api).status_code == 201
    messages, conversations, calls = Message.objects.count(), Conversation.objects.count(), len(provider_calls)

    responses = [send(api, "sms", payloads.sms(to=f"+1804555{n:04d}")) for n in range(3)]

    assert [r.status_code for r in responses] == [429, 429, 429]
    assert Message.objects.count() == messages
    assert Conversation.objects.count() == conversations
    assert len(provider_calls) == calls


def test_another_sender_still_passes_when_one_is_limited(api, settings):
    settings.SMS_RATE_LIMIT = (2, DAY)
    for _ in range(2):
        send_sms(api, "+12016661234")
    assert send_sms(api, "+12016661234").status_code == 429

    other = send_sms(api, "+12016665678")

    assert other.status_code == 201
    assert limit_headers(other) == {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1"}


def test_every_spelling_of_one_sender_number_shares_its_limit(api, settings):
    settings.SMS_RATE_LIMIT = (3, DAY)

    codes = [send_sms(api, sender).status_code for sender in ("+1 201-666-1234", "(201) 666-1234", "+12016661234")]
    refused = send_sms(api, "201.666.1234")

    assert codes == [201, 201, 201]
    assert refused.status_code == 429


def test_email_has_its_own_limit_and_sender_case_does_not_split_it(api, settings):
    settings.SMS_RATE_LIMIT = (1, DAY)
    settings.EMAIL_RATE_LIMIT = (2, DAY)

    first = send(api, "email", payloads.email(**{"from": "Sales@Example.com"}))
    second = send(api, "email", payloads.email(**{"from": "sales@EXAMPLE.com"}))
    third = send(api, "email", payloads.email(**{"from": "sales@example.com"}))

    assert [first.status_code, second.status_code, third.status_code] == [201, 201, 429]
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert third.json()["error"]["message"].startswith("Too many Email messages")


def test_sms_and_email_are_counted_apart_for_one_key(api, settings):
    settings.RATE_LIMIT_KEY = "api_key"
    settings.SMS_RATE_LIMIT = (1, DAY)
    settings.EMAIL_RATE_LIMIT = (1, DAY)
    _, key = api_key_create(name="k1")

    assert send_sms(api, X_API_Key=key).status_code == 201
    assert send_sms(api, X_API_Key=key).status_code == 429
    assert send(api, "email", payloads.email(), X_API_Key=key).status_code == 201


# --- What counts ---------------------------------------------------------------------------------


def test_invalid_requests_do_not_count_but_carry_the_senders_limit_headers(api, settings):
    settings.SMS_RATE_LIMIT = (1, DAY)

    invalid = [send(api, "sms", payloads.sms(to="not-a-number")) for _ in range(3)]
    bad_key = send_sms(api, **{"Idempotency-Key": " "})
    no_sender = send(api, "sms", payloads.sms(**{"from": "nobody"}))
    valid = send_sms(api)

    assert [r.status_code for r in invalid] == [400, 400, 400]
    assert bad_key.status_code == 400
    for refused in [*invalid, bad_key]:
        assert refused.headers["X-RateLimit-Limit"] == "1"
        assert refused.headers["X-RateLimit-Remaining"] == "1"  # nothing was counted
        assert int(refused.headers["X-RateLimit-Reset"]) > time.time()
    assert no_sender.status_code == 400
    assert "X-RateLimit-Limit" not in no_sender.headers  # no valid sender: no key to report on
    assert valid.status_code == 201
    assert valid.headers["X-RateLimit-Remaining"] == "0"


def test_in_ip_mode_even_a_request_without_a_valid_sender_carries_the_headers(api, settings):
    settings.RATE_LIMIT_KEY = "ip"
    settings.SMS_RATE_LIMIT = (3, DAY)

    refused = send(api, "sms", payloads.sms(**{"from": "nobody"}))

    assert refused.status_code == 400
    assert refused.headers["X-RateLimit-Remaining"] == "3"


def test_idempotent_replays_count_against_the_limit(api, settings, provider_calls):
    settings.SMS_RATE_LIMIT = (2, DAY)
    key = {"Idempotency-Key": "order-17"}

    original = send_sms(api, **key)
    replay = send_sms(api, **key)
    refused = send_sms(api, **key)

    assert original.status_code == 201
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    assert len(provider_calls) == 1


def test_answers_after_the_count_carry_the_headers_whatever_their_status(api):
    pending = send(api, "sms", payloads.sms(_forceError={"code": 503, "times": 1}))
    failed = send(api, "sms", payloads.sms(_forceError={"code": 400}))
    send_sms(api, **{"Idempotency-Key": "k"})
    reused = send(api, "sms", payloads.sms(body="another body"), **{"Idempotency-Key": "k"})

    assert [pending.status_code, failed.status_code, reused.status_code] == [202, 502, 422]
    assert [r.headers["X-RateLimit-Remaining"] for r in (pending, failed, reused)] == ["99", "98", "96"]


def test_switched_off_limits_count_nothing_and_add_no_headers(api, settings):
    settings.RATELIMIT_ENABLE = False
    settings.SMS_RATE_LIMIT = (1, DAY)

    responses = [send_sms(api) for _ in range(3)]

    assert [r.status_code for r in responses] == [201, 201, 201]
    assert all("X-RateLimit-Limit" not in r.headers for r in responses)


# --- Keys ----------------------------------------------------------------------------------------


def test_api_key_mode_counts_per_presented_key_in_either_header(api, settings):
    settings.RATE_LIMIT_KEY = "api_key"
    settings.SMS_RATE_LIMIT = (2, DAY)
    _, key_one = api_key_create(name="one")
    _, key_two = api_key_create(name="two")

    bearer = send_sms(api, "+12016661111", Authorization=f"Bearer {key_one}")
    header = send_sms(api, "+12016662222", X_API_Key=key_one)
    refused = send_sms(api, "+12016663333", Authorization=f"bearer {key_one}")
    other_key = send_sms(api, "+12016661111", Authorization=f"Bearer {key_two}")

    assert [bearer.status_code, header.status_code, refused.status_code] == [201, 201, 429]
    assert "this API key" in refused.json()["error"]["message"]
    assert other_key.status_code == 201


def test_api_key_mode_counts_by_key_id_never_the_secret_and_falls_back_to_the_client_ip(api, settings):
    settings.RATE_LIMIT_KEY = "api_key"
    api_key, _ = api_key_create(name="ci")
    with_key = RequestFactory().post("/")
    with_key.auth = api_key
    without_key = RequestFactory().post("/", REMOTE_ADDR="203.0.113.9")

    assert ratelimits.rate_limit_key(request=with_key, sender="+12016661234") == f"api_key:{api_key.pk}"
    assert ratelimits.rate_limit_key(request=without_key, sender="+12016661234") == "ip:203.0.113.9"


def test_ip_mode_counts_per_remote_address_and_ignores_forwarded_for(api, settings):
    settings.RATE_LIMIT_KEY = "ip"
    settings.SMS_RATE_LIMIT = (1, DAY)

    first = api.post("/api/messages/sms", payloads.sms(), format="json", REMOTE_ADDR="198.51.100.1")
    spoofed = api.post(
        "/api/messages/sms",
        payloads.sms(**{"from": "+12016669999"}),
        format="json",
        REMOTE_ADDR="198.51.100.1",
        HTTP_X_FORWARDED_FOR="192.0.2.77",
    )
    other_client = api.post("/api/messages/sms", payloads.sms(), format="json", REMOTE_ADDR="198.51.100.2")

    assert [first.status_code, spoofed.status_code, other_client.status_code] == [201, 429, 201]


@pytest.mark.parametrize(
    ("header_value", "remote_addr", "expected"),
    [
        ("192.0.2.1, 198.51.100.7", "10.0.0.2", "198.51.100.7"),  # the entry the trusted proxy appended
        ("not an address", "10.0.0.2", "10.0.0.2"),
        (None, "10.0.0.2", "10.0.0.2"),
        (None, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),  # IPv6 counts per /64
        (None, "", "unknown"),
    ],
)
def test_the_client_ip_comes_from_the_configured_proxy_header_else_remote_addr(header_value, remote_addr, expected):
    headers = {"X-Real-IP": header_value} if header_value is not None else {}
    request = RequestFactory().post("/", headers=headers, REMOTE_ADDR=remote_addr)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(django_settings, "RATE_LIMIT_IP_HEADER", "X-Real-IP")
        assert ratelimits.client_ip(request) == expected


# --- Redis ---------------------------------------------------------------------------------------


def test_limits_are_counted_in_redis_when_it_is_configured(api, settings, redis_limits):
    settings.SMS_RATE_LIMIT = (2, DAY)

    codes = [send_sms(api).status_code for _ in range(3)]

    assert codes == [201, 201, 429]
    [counter] = redis_limits.keys("messaging:1:rl:*")
    assert int(redis_limits.get(counter)) == 3
    assert 0 < redis_limits.ttl(counter) <= DAY + 5


def test_a_send_is_counted_in_one_round_trip_on_django_ratelimit_s_own_counter(settings, redis_limits, monkeypatch):
    from django_ratelimit.core import get_usage

    settings.SMS_RATE_LIMIT = (5, DAY)
    request = RequestFactory().post("/api/messages/sms")
    ratelimits.rate_limit_consume(request=request, channel="sms", sender="+12016661234")
    commands, pipelines = [], []
    original_command = redis.Redis.execute_command
    monkeypatch.setattr(
        redis.Redis,
        "execute_command",
        lambda self, *args, **kw: commands.append(args[0]) or original_command(self, *args, **kw),
    )
    original_lean = _LeanConnection.call
    monkeypatch.setattr(
        _LeanConnection,
        "call",
        lambda self, *args: commands.append(args[0]) or original_lean(self, *args),
    )
    monkeypatch.setattr(redis.client.Pipeline, "execute", lambda self, *args, **kw: pipelines.append(self))

    quota = ratelimits.rate_limit_consume(request=request, channel="sms", sender="+12016661234")

    assert commands == ["EVALSHA"], "one command: no SET NX, EXISTS, INCRBY one by one"
    assert pipelines == []
    assert (quota.limit, quota.remaining, quota.exceeded) == (5, 3, False)
    monkeypatch.undo()
    usage = get_usage(
        request, group="messaging.send.sms", key=lambda _g, _r: "sender:+12016661234", rate=(5, DAY), increment=False
    )
    assert usage["count"] == 2  # the key, window and value django-ratelimit itself reads


def test_with_redis_down_sends_go_through_uncounted_and_a_warning_is_logged(api, settings, caplog, provider_calls):
    settings.CACHES = {**settings.CACHES, "ratelimit": redis_cache(f"redis://127.0.0.1:{free_port()}/14")}
    settings.SMS_RATE_LIMIT = (1, DAY)

    with caplog.at_level(logging.WARNING, logger="messaging.ratelimits"):
        responses = [send_sms(api) for _ in range(3)]

    assert [r.status_code for r in responses] == [201, 201, 201]
    assert all("X-RateLimit-Limit" not in r.headers for r in responses)
    assert len(provider_calls) == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "messaging.ratelimits"]
    assert len(warnings) == 1  # throttled: one per minute per process, not one per request
    assert "Rate-limit counters unreachable (ConnectionError" in warnings[0]
    assert "sending without limits (RATE_LIMIT_FAIL_OPEN=true)" in warnings[0]


def test_with_redis_down_and_failing_closed_sends_answer_503_and_store_nothing(api, settings, provider_calls):
    settings.CACHES = {**settings.CACHES, "ratelimit": redis_cache(f"redis://127.0.0.1:{free_port()}/14")}
    settings.RATE_LIMIT_FAIL_OPEN = False

    sms = send_sms(api)
    email = send(api, "email", payloads.email())

    for response in (sms, email):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert "X-RateLimit-Limit" not in response.headers
        assert response.json()["error"]["code"] == "rate_limit_unavailable"
        assert response.json()["error"]["details"] == {"retry_after": 5}
        assert "Traceback" not in response.content.decode()
    assert Message.objects.count() == 0
    assert provider_calls == []


def test_with_redis_down_an_invalid_send_is_still_answered_for_what_is_wrong_with_it(api, settings):
    settings.CACHES = {**settings.CACHES, "ratelimit": redis_cache(f"redis://127.0.0.1:{free_port()}/14")}
    settings.RATE_LIMIT_FAIL_OPEN = False

    response = send(api, "sms", payloads.sms(to="not-a-number"))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "X-RateLimit-Limit" not in response.headers


_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import django
    django.setup()
    from django.test import Client
    sends, body, gate = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    client = Client()
    print("ready", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.01)
    codes = [client.post("/api/messages/sms", body, content_type="application/json").status_code for _ in range(sends)]
    print(json.dumps(codes), flush=True)
    """
)


def _database_url():
    db = connection.settings_dict
    credentials = f"{quote(db['USER'], safe='')}:{quote(db['PASSWORD'], safe='')}"
    return f"postgresql://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_limit_through_redis(redis_db, tmp_path):
    limit, sends_each = 7, 10
    sender = "+12016661234"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": REDIS_TEST_URL,
        "SMS_RATE_LIMIT": f"{limit}/d",
        "RATE_LIMIT_KEY": "sender",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_FAIL_OPEN": "false",  # an unreachable Redis fails the test instead of passing everything
        "MOCK_PROVIDER_LATENCY_MS": "0",
        "MOCK_PROVIDER_FAILURE_RATE": "0",
        "DJANGO_DEBUG": "false",
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "ERROR",
    }
    gate = tmp_path / "go"
    body = json.dumps(payloads.sms(**{"from": sender}))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(sends_each), body, str(gate)],
            cwd=django_settings.BASE_DIR,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert _readline(worker.stdout, timeout=60) == "ready", worker.communicate(timeout=30)[1]
        gate.touch()  # both processes are set up: let them send at once
        outputs = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    codes = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        codes.extend(json.loads(stdout))
    assert codes.count(201) == limit  # one process alone would allow the full limit: 14 in all
    assert codes.count(429) == 2 * sends_each - limit
    assert Message.objects.filter(from_address=sender).count() == limit
    [counter] = redis_db.keys("messaging:1:rl:*")
    assert int(redis_db.get(counter)) == 2 * sends_each


def _readline(stream, *, timeout: float) -> str:
    """One line from a child's pipe, or "" if none comes within ``timeout`` (never blocks for ever)."""
    readable, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().strip() if readable else ""


# --- Configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("100/m", (100, 60)), ("100/min", (100, 60)), ("100", (100, 60)), ("5/ 10s", (5, 10)), ("2/hours", (2, 3600))],
)
def test_rates_are_read_in_the_documented_forms(value, expected):
    assert Env({"SMS_RATE_LIMIT": value}).rate("SMS_RATE_LIMIT", "100/m") == expected


@pytest.mark.parametrize("value", ["lots", "100/fortnight", "0/m", "10/0m", "100/", "1/ms"])
def test_a_bad_rate_names_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match="SMS_RATE_LIMIT must"):
        Env({"SMS_RATE_LIMIT": value}).rate("SMS_RATE_LIMIT", "100/m")


def _settings_in_a_fresh_process(extra_env):
    program = "from django.conf import settings; import json; print(json.dumps(settings.CACHES['ratelimit']))"
    environment = {"DJANGO_SETTINGS_MODULE": "config.settings.development", "PATH": "/usr/bin:/bin", **extra_env}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {program}"],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_redis_url_selects_a_redis_cache_with_short_timeouts_and_bad_values_stop_start_up():
    environments = [
        {"REDIS_URL": "redis://cache.internal:6379/3"},
        {},
        {"REDIS_URL": "http://cache.internal"},
        {"EMAIL_RATE_LIMIT": "many"},
        {"RATE_LIMIT_KEY": "user"},
    ]
    with ThreadPoolExecutor(max_workers=len(environments)) as pool:
        with_redis, without, bad_url, bad_rate, bad_key = pool.map(_settings_in_a_fresh_process, environments)

    cache = json.loads(with_redis.stdout)
    assert cache["BACKEND"] == "core.redis_cache.RedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6379/3"
    assert cache["OPTIONS"] == {
        "socket_connect_timeout": 0.25,
        "socket_timeout": 0.25,
        "pool_class": "redis.BlockingConnectionPool",
        "max_connections": 100,
        "timeout": 2.0,
    }
    assert json.loads(without.stdout)["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert bad_url.returncode != 0
    assert "REDIS_URL is not a valid Redis URL" in bad_url.stderr
    assert "EMAIL_RATE_LIMIT must be a rate like 100/m" in bad_rate.stderr
    assert "RATE_LIMIT_KEY must be one of" in bad_key.stderr


def test_the_openapi_schema_documents_429_and_the_headers_on_both_send_endpoints(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    for path in ("/api/messages/sms", "/api/messages/email"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"429", "503"} <= set(responses)
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"} <= set(
            responses["429"]["headers"]
        )
        assert "X-RateLimit-Reset" in responses["201"]["headers"]
