"""Each adapter reading the providers' real answers (tests/providers/http/recorded/: bodies and headers
as the providers document them), and the requests it makes, checked without any network."""

from urllib.parse import parse_qs

import httpx
import pytest

from providers.base import ProviderError
from providers.registry import provider_get
from tests.providers.http.conftest import ACCOUNT_SID, AUTH_TOKEN, PHONE_NUMBER_ID, answer_with, outbound, recorded

SENT: list[httpx.Request] = []


def replay(name: str):
    def handler(request: httpx.Request) -> httpx.Response:
        SENT.append(request)
        return recorded(name)

    return handler


@pytest.fixture
def real(http_settings):
    SENT.clear()
    http_settings.TWILIO_BASE_URL = "https://api.twilio.com"
    http_settings.SENDGRID_BASE_URL = "https://api.sendgrid.com"
    http_settings.META_GRAPH_BASE_URL = "https://graph.facebook.com"
    http_settings.PUBLIC_BASE_URL = "https://msg.example.com"
    return http_settings


def send(provider: str, channel: str, answer: str, **overrides):
    answer_with(provider, replay(answer))
    return provider_get(provider).send(outbound(channel, **overrides))


def fail(provider: str, channel: str, answer: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        send(provider, channel, answer)
    return caught.value


def test_twilio_request_is_the_messages_api_form_with_basic_auth_callback_and_token(real):
    result = send("twilio", "mms", "twilio_201_queued.json", token="tok-42")

    (request,) = SENT
    assert str(request.url) == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.headers["I-Twilio-Idempotency-Token"] == "tok-42"
    assert request.headers["Authorization"] == httpx.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)._auth_header
    form = parse_qs(request.content.decode())
    assert form["To"] == ["+18045551234"]
    assert form["MediaUrl"] == ["https://example.com/a.png"]
    assert form["StatusCallback"] == ["https://msg.example.com/api/webhooks/sms/status"]
    assert (result.provider_message_id, result.status) == ("SM1f0e8ae6ade43cb3c0ce4525424e404f", "queued")


@pytest.mark.parametrize(
    ("answer", "code", "retryable", "not_accepted", "retry_after"),
    [
        ("twilio_400_21211.json", 21211, False, False, None),
        ("twilio_401_20003.json", 20003, False, False, None),
        ("twilio_429_20429.json", 20429, True, True, 3.0),
        ("twilio_503_20503.json", 20503, True, True, None),
        ("proxy_502_html.json", 502, True, False, None),
    ],
)
def test_twilio_errors(real, answer, code, retryable, not_accepted, retry_after):
    error = fail("twilio", "sms", answer)

    assert (error.code, error.retryable, error.not_accepted, error.retry_after) == (
        code,
        retryable,
        not_accepted,
        retry_after,
    )


def test_twilio_error_message_is_twilios(real):
    assert fail("twilio", "sms", "twilio_400_21211.json").message == (
        "The 'To' number 12345 is not a valid phone number."
    )


def test_sendgrid_request_is_v3_mail_send_with_bearer_subject_and_token(real):
    result = send("sendgrid", "email", "sendgrid_202.json", token="mail-7")

    (request,) = SENT
    assert str(request.url) == "https://api.sendgrid.com/v3/mail/send"
    assert request.headers["Authorization"] == "Bearer SG.test-key"
    mail = httpx.Response(200, content=request.content).json()
    assert mail["personalizations"] == [{"to": [{"email": "contact@example.com"}]}]
    assert mail["subject"] == "Hello over HTTP"
    assert mail["custom_args"] == {"idempotency_token": "mail-7"}
    assert result.provider_message_id == "HSbN4wAiTqyfHUvu7dWJtg"


@pytest.mark.parametrize(
    ("answer", "code", "retryable", "not_accepted", "retry_after"),
    [
        ("sendgrid_400_errors.json", 400, False, False, None),
        ("sendgrid_401.json", 401, False, False, None),
        ("sendgrid_429.json", 429, True, True, 12.0),
        ("sendgrid_500.json", 500, True, False, None),
    ],
)
def test_sendgrid_errors(real, answer, code, retryable, not_accepted, retry_after):
    error = fail("sendgrid", "email", answer)

    assert (error.code, error.retryable, error.not_accepted, error.retry_after) == (
        code,
        retryable,
        not_accepted,
        retry_after,
    )


def test_sendgrid_lists_every_problem_with_its_field(real):
    message = fail("sendgrid", "email", "sendgrid_400_errors.json").message

    assert message.startswith("from.email: The from email does not contain a valid address.; subject: ")


def test_sendgrid_202_without_x_message_id_is_transient_not_a_success(real):
    answer_with("sendgrid", lambda request: httpx.Response(202))

    with pytest.raises(ProviderError) as caught:
        provider_get("sendgrid").send(outbound("email"))

    assert (caught.value.code, caught.value.retryable, caught.value.not_accepted) == ("invalid_response", True, False)


def test_meta_whatsapp_request_is_the_cloud_api_with_bearer_and_idempotency_key(real):
    result = send("meta", "whatsapp", "meta_whatsapp_200.json", token="wa-9")

    (request,) = SENT
    assert str(request.url) == f"https://graph.facebook.com/v21.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["Authorization"] == "Bearer meta-access-token"
    assert request.headers["Idempotency-Key"] == "wa-9"
    payload = httpx.Response(200, content=request.content).json()
    assert payload["messaging_product"] == "whatsapp"
    assert payload["to"] == "14155550123"
    assert result.provider_message_id == "wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI3N0EzRjE1NEY3QkI3ODVBQTcA"


def test_meta_instagram_reads_message_id(real):
    result = send("meta", "instagram", "meta_instagram_200.json")

    assert str(SENT[0].url).endswith("/v21.0/17841400000000042/messages")
    assert result.provider_message_id.startswith("aWdf")


@pytest.mark.parametrize(
    ("answer", "code", "retryable", "not_accepted"),
    [
        ("meta_400_131030.json", 131030, False, False),
        ("meta_401_190.json", 190, False, False),
        # Meta sends throughput limits with a 400: the code decides.
        ("meta_400_130429_rate_limit.json", 130429, True, True),
        ("meta_500_131000.json", 131000, True, False),
    ],
)
def test_meta_errors(real, answer, code, retryable, not_accepted):
    error = fail("meta", "whatsapp", answer)

    assert (error.code, error.retryable, error.not_accepted) == (code, retryable, not_accepted)


def test_meta_error_keeps_the_subcode(real):
    assert fail("meta", "whatsapp", "meta_401_190.json").message.endswith("(subcode 463)")
