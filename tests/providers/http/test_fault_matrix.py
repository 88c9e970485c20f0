"""The fault matrix (docs/PROVIDERS.md): every way an HTTP send can fail, on every provider, ends as
documented. ``not_accepted`` is what failover relies on: True only when the failure proves the
provider did not take the message."""

import pytest

from providers.base import ProviderError, ProviderTimeout
from providers.registry import provider_get
from tests.ports import free_port
from tests.providers.http.conftest import inject_fault, outbound, point_at

CHANNEL_OF = {"twilio": "sms", "sendgrid": "email", "meta": "whatsapp"}
PROVIDERS = list(CHANNEL_OF)


def send_with_fault(provider: str, fault: str | None, token: str = "tok") -> ProviderError:
    inject_fault(provider, fault)
    with pytest.raises(ProviderError) as caught:
        provider_get(provider).send(outbound(CHANNEL_OF[provider], token=token))
    return caught.value


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_refused_is_transient_and_proves_nothing_was_accepted(provider, http_settings):
    point_at(http_settings, f"http://127.0.0.1:{free_port()}")

    error = send_with_fault(provider, None)

    assert (error.code, error.retryable, error.not_accepted) == ("connection_refused", True, True)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reset_before_any_answer_is_transient_and_not_proof(provider, sim):
    error = send_with_fault(provider, "reset-before")

    assert (error.code, error.retryable, error.not_accepted) == ("connection_lost", True, False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reset_mid_answer_is_transient_and_the_retry_is_a_replay(provider, sim):
    error = send_with_fault(provider, "reset", token="reset-1")

    assert (error.code, error.retryable, error.not_accepted) == ("connection_lost", True, False)
    inject_fault(provider, None)
    provider_get(provider).send(outbound(CHANNEL_OF[provider], token="reset-1"))
    stats = sim.stats()[provider]
    assert (stats["sends"], stats["replays"]) == (1, 1)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slower_than_the_timeout_is_a_transient_timeout_and_the_retry_is_a_replay(provider, sim):
    error = send_with_fault(provider, "timeout;seconds=3", token="slow-1")

    assert isinstance(error, ProviderTimeout)
    assert (error.code, error.retryable, error.not_accepted) == ("timeout", True, False)
    inject_fault(provider, None)
    provider_get(provider).send(outbound(CHANNEL_OF[provider], token="slow-1"))
    stats = sim.stats()[provider]
    assert (stats["sends"], stats["replays"]) == (1, 1)


@pytest.mark.parametrize("provider", ["twilio", "meta"])
def test_invalid_json_in_a_success_is_transient_with_a_clear_code(provider, sim):
    error = send_with_fault(provider, "invalid-json")

    assert (error.code, error.retryable, error.not_accepted) == ("invalid_response", True, False)
    assert "may have been accepted" in error.message


def test_sendgrid_reads_only_x_message_id_so_a_body_that_is_not_json_does_not_matter(sim):
    inject_fault("sendgrid", "invalid-json")

    result = provider_get("sendgrid").send(outbound("email"))

    assert result.provider_message_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_html_error_page_is_transient_and_not_proof(provider, sim):
    error = send_with_fault(provider, "invalid-json;status=502")

    assert (error.code, error.retryable, error.not_accepted) == (502, True, False)
    assert "HTTP 502" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_honours_retry_after_and_proves_nothing_was_accepted(provider, sim):
    error = send_with_fault(provider, "429;retry_after=7")

    assert (error.retryable, error.not_accepted, error.retry_after) == (True, True, 7.0)
    assert sim.stats()[provider]["sends"] == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_500_is_transient_but_not_proof_that_nothing_was_accepted(provider, sim):
    error = send_with_fault(provider, "500")

    assert (error.retryable, error.not_accepted) == (True, False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_503_is_transient_and_proves_nothing_was_accepted(provider, sim):
    error = send_with_fault(provider, "503")

    assert (error.retryable, error.not_accepted) == (True, True)


@pytest.mark.parametrize(
    ("provider", "fault", "code"),
    [("twilio", "400;code=21610", 21610), ("sendgrid", "400", 400), ("meta", "400", 131030)],
)
def test_a_refusal_of_the_message_is_permanent_with_the_providers_code(provider, fault, code, sim):
    error = send_with_fault(provider, fault)

    assert (error.code, error.retryable) == (code, False)
