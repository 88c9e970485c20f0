import os
import re
import threading
import uuid
from urllib.parse import urlsplit

import pytest
import redis
from django.core.cache import caches

from core.redis_cache import _LeanConnection
from providers.base import ForcedError, OutboundMessage, ProviderError, ProviderTimeout
from providers.meta import MetaProvider
from providers.segments import sms_segments
from providers.sendgrid import SendGridProvider as MockSendGridProvider
from providers.twilio import TwilioProvider as MockTwilioProvider
from tests.fault_proxy import FREEZE, PASS, FaultProxy


def outbound(**overrides):
    fields = {
        "channel": "sms",
        "type": "sms",
        "from_address": "+12016661234",
        "to_address": "+18045551234",
        "body": "hello",
        "attachments": [],
        "idempotency_token": "msg-1",
    }
    return OutboundMessage(**{**fields, **overrides})


def test_twilio_sids_are_sm_or_mm_plus_32_hex_and_carry_twilio_fields():
    sms = MockTwilioProvider().send(outbound())
    mms = MockTwilioProvider().send(outbound(type="mms", attachments=["https://e.com/a.jpg"], idempotency_token="x"))
    assert re.fullmatch(r"SM[0-9a-f]{32}", sms.provider_message_id)
    assert re.fullmatch(r"MM[0-9a-f]{32}", mms.provider_message_id)
    assert sms.response["status"] == "queued"
    assert sms.response["account_sid"].startswith("AC")
    assert sms.response["num_segments"] == "1"
    assert mms.response["num_media"] == "1"
    assert sms.response["direction"] == "outbound-api"


def test_the_same_idempotency_token_gets_the_same_sid():
    provider = MockTwilioProvider()
    assert provider.send(outbound()).provider_message_id == provider.send(outbound()).provider_message_id
    assert (
        provider.send(outbound()).provider_message_id
        != provider.send(outbound(idempotency_token="2")).provider_message_id
    )


def test_which_providers_answer_a_repeated_token_with_the_original_send(settings):
    """Where a lost outcome may be left to the outbox's retry (messaging.services): every mock
    remembers its tokens; no real API is counted on for it."""
    providers = (MockTwilioProvider(), MockSendGridProvider(), MetaProvider())
    assert [provider.replays_by_token for provider in providers] == [True, True, True]
    settings.PROVIDER_MODE = "http"
    assert [provider.replays_by_token for provider in providers] == [False, False, False]


def test_sendgrid_message_ids_follow_the_filter_format():
    result = MockSendGridProvider().send(outbound(channel="email", type="email"))
    assert re.fullmatch(r"[0-9a-f]{16}\.filter001\.\d+\.0", result.provider_message_id)
    assert result.response["statusCode"] == 202


@pytest.mark.parametrize(("code", "retryable"), [(400, False), (404, False), (429, True), (500, True), (503, True)])
def test_forced_errors_say_whether_they_are_transient(code, retryable):
    with pytest.raises(ProviderError) as caught:
        MockTwilioProvider().send(outbound(forced_error=ForcedError(code=code, message="boom")))
    assert caught.value.code == code
    assert caught.value.message == "boom"
    assert caught.value.retryable is retryable


def test_forced_error_with_times_fails_only_the_first_attempts():
    forced = ForcedError(code=503, times=2)
    provider = MockTwilioProvider()
    for attempt in (1, 2):
        with pytest.raises(ProviderError):
            provider.send(outbound(forced_error=forced, attempt=attempt))
    assert provider.send(outbound(forced_error=forced, attempt=3)).status == "queued"


def test_latency_over_the_timeout_is_a_retryable_timeout(settings):
    settings.MOCK_PROVIDER_LATENCY_MS = (300, 300)
    settings.PROVIDER_TIMEOUT_SECONDS = 0.1
    with pytest.raises(ProviderTimeout) as caught:
        MockTwilioProvider().send(outbound())
    assert caught.value.retryable


def test_random_failure_rate_produces_transient_errors(settings):
    settings.MOCK_PROVIDER_FAILURE_RATE = 1.0
    with pytest.raises(ProviderError) as caught:
        MockSendGridProvider().send(outbound(channel="email", type="email"))
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("body", "segments"),
    [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("é" * 160, 1), ("😀" * 35, 1), ("ж" * 71, 2)],
)
def test_segments_follow_gsm7_and_ucs2_limits(body, segments):
    assert sms_segments(body) == segments


class TestIdempotencyTokens:
    @pytest.mark.parametrize(
        ("provider", "carried_in"),
        [
            (MockTwilioProvider(), lambda request: request["headers"]["I-Twilio-Idempotency-Token"]),
            (MockSendGridProvider(), lambda request: request["json"]["custom_args"]["idempotency_token"]),
        ],
    )
    def test_the_token_travels_as_the_real_api_carries_it(self, provider, carried_in):
        message = outbound(idempotency_token="tok-42")

        assert carried_in(provider.request_for(message)) == "tok-42"

    @pytest.mark.parametrize("provider", [MockTwilioProvider(), MockSendGridProvider()])
    def test_a_token_seen_before_gets_the_original_send_back_and_nothing_is_sent_again(self, provider):
        first = provider.send(outbound(idempotency_token="tok-1"))
        # Even a retry that would now fail gets the original answer: the provider already has it.
        again = provider.send(outbound(idempotency_token="tok-1", forced_error=ForcedError(code=503)))

        assert again.replayed is True
        assert first.replayed is False
        assert again.provider_message_id == first.provider_message_id
        assert provider.counts() == {"sends": 1, "replays": 1}

    def test_another_token_is_another_message(self):
        provider = MockTwilioProvider()

        first = provider.send(outbound(idempotency_token="tok-a"))
        second = provider.send(outbound(idempotency_token="tok-b"))

        assert first.provider_message_id != second.provider_message_id
        assert provider.counts() == {"sends": 2, "replays": 0}


class TestLedgerInRedis:
    """The mock's memory in Redis (production, and every worker process of a test): a first send is
    remembered and counted in one atomic round trip."""

    @pytest.fixture
    def redis_ledger(self, settings):
        prefix = f"mock-ledger-test-{uuid.uuid4().hex}"
        settings.CACHES = {
            **settings.CACHES,
            settings.MOCK_PROVIDER_CACHE: {
                "BACKEND": "core.redis_cache.RedisCache",
                "LOCATION": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
                "KEY_PREFIX": prefix,
            },
        }
        yield
        client = caches[settings.MOCK_PROVIDER_CACHE]._cache.get_client(write=True)
        client.delete(*client.keys(f"{prefix}:*") or ["-"])

    @pytest.fixture
    def commands(self, monkeypatch):
        sent: list[str] = []
        original = redis.Redis.execute_command

        def recording(client, *args, **options):
            sent.append(str(args[0]).upper())
            return original(client, *args, **options)

        monkeypatch.setattr(redis.Redis, "execute_command", recording)
        lean = _LeanConnection.call  # the scripts' own connections (core/redis_cache.py)
        monkeypatch.setattr(
            _LeanConnection, "call", lambda self, *args: sent.append(str(args[0]).upper()) or lean(self, *args)
        )
        return sent

    def test_a_first_send_is_remembered_and_counted_in_one_command(self, redis_ledger, commands):
        provider = MockTwilioProvider()
        provider.send(outbound(idempotency_token="warm-up"))  # the script is loaded on first use
        commands.clear()

        provider.send(outbound(idempotency_token="tok-1"))

        assert commands == ["EVALSHA"]
        assert provider.counts() == {"sends": 2, "replays": 0}

    def test_a_repeated_token_is_neither_sent_nor_counted_again(self, redis_ledger):
        provider = MockTwilioProvider()

        first = provider.send(outbound(idempotency_token="tok-1"))
        again = provider.send(outbound(idempotency_token="tok-1"))

        assert again.replayed is True
        assert again.provider_message_id == first.provider_message_id
        assert provider.counts() == {"sends": 1, "replays": 1}


class TestLedgerWhenRedisIsSlow:
    """Production's caches (config.settings.base._caches): the rate limit gives up on a slow Redis after
    REDIS_TIMEOUT_SECONDS and goes on without it, but the mocks' memory stands for a provider's own record
    of what it sent, and waits longer (MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS) rather than forget a send.
    Under an outbox drain of hundreds of calls in flight, Redis answered late enough that a mock with
    the rate limit's bound lost a send from its count (docs/PERFORMANCE.md, thirty-fourth round)."""

    @pytest.fixture
    def slow_redis(self, settings):
        from config.settings.base import _caches

        target = urlsplit(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
        proxy = FaultProxy(target=(target.hostname or "127.0.0.1", target.port or 6379)).start()
        through_proxy = f"redis://127.0.0.1:{proxy.port}{target.path}"
        configured = _caches(through_proxy, 0.25, settings.MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS)
        prefix = f"mock-ledger-slow-test-{uuid.uuid4().hex}"
        settings.CACHES = {
            **settings.CACHES,
            "ratelimit": {**configured["ratelimit"], "KEY_PREFIX": prefix},
            settings.MOCK_PROVIDER_CACHE: {**configured[settings.MOCK_PROVIDER_CACHE], "KEY_PREFIX": prefix},
        }
        yield proxy
        proxy.close()
        client = redis.Redis.from_url(target.geturl())
        client.delete(*client.keys(f"{prefix}:*") or ["-"])

    @staticmethod
    def _freeze_for(proxy, seconds):
        proxy.set_mode(FREEZE)
        thaw = threading.Timer(seconds, proxy.set_mode, [PASS])
        thaw.start()
        return thaw

    def test_a_send_is_remembered_and_counted_though_redis_answers_late(self, slow_redis, settings):
        thaw = self._freeze_for(slow_redis, 0.6)
        with pytest.raises(redis.exceptions.TimeoutError):  # the rate limit's bound: not waited for
            caches["ratelimit"].get("anything")
        thaw.join()
        provider = MockTwilioProvider()

        self._freeze_for(slow_redis, 0.6)
        first = provider.send(outbound(idempotency_token="tok-late"))
        again = provider.send(outbound(idempotency_token="tok-late"))

        assert provider.counts() == {"sends": 1, "replays": 1}
        assert again.replayed is True
        assert again.provider_message_id == first.provider_message_id
