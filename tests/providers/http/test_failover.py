"""Failover over HTTP: the SMS channel lists a primary and a backup provider, each a simulator. The
backup gets a message only when the primary proves it did not take it, or its breaker is open; the
simulators' /stats prove no message is ever accepted twice."""

import pytest

from messaging.models import MessageStatus
from messaging.outbox import outbox_deliver_now
from messaging.services import ACCEPTED_BY, UNCONFIRMED_PROVIDER, SendCommand, message_send
from providers import http
from providers.breaker import CLOSED, HALF_OPEN, OPEN, breaker_state
from tests.ports import free_port
from tests.providers.http.conftest import CREDENTIALS, inject_fault, point_at
from tests.providers.simulator.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
BACKUP = "tests.providers.http.backup.BackupTwilio"


@pytest.fixture
def chain(http_settings, start_simulator):
    """(primary, backup) simulators; SMS_PROVIDERS=twilio,<backup>."""
    primary = start_simulator(credentials=CREDENTIALS, callbacks=False, timeout_seconds=3)
    backup = start_simulator(credentials=CREDENTIALS, callbacks=False)
    point_at(http_settings, primary.url)
    http_settings.BACKUP_TWILIO_BASE_URL = backup.url
    http_settings.MESSAGE_PROVIDERS = {**http_settings.MESSAGE_PROVIDERS, "sms": ["twilio", BACKUP]}
    http_settings.PROVIDER_BREAKER_FAILURES = 3
    http_settings.RETRY_BASE_DELAY_SECONDS = 0
    return primary, backup


def send(index: int = 0):
    command = SendCommand(
        channel="sms", type="sms", from_address="+12015550100", to_address=f"+1804555{index:04d}", body="Hi"
    )
    return message_send(command=command).message


def sends(sim) -> int:
    return sim.stats()["twilio"]["sends"]


def test_a_refused_connection_fails_over_and_the_message_records_the_backup(chain, http_settings):
    _primary, backup = chain
    point_at(http_settings, f"http://127.0.0.1:{free_port()}")

    message = send()

    assert message.status == MessageStatus.SENT
    assert message.metadata[ACCEPTED_BY] == "twilio-backup"
    assert sends(backup) == 1


def test_a_primary_that_is_down_503_fails_over_at_once(chain):
    primary, backup = chain
    primary.post_json("/control", {"mode": "down"})

    message = send()

    assert (message.status, message.metadata[ACCEPTED_BY]) == (MessageStatus.SENT, "twilio-backup")
    assert (primary.stats()["twilio"]["requests"], sends(primary), sends(backup)) == (1, 0, 1)


def test_a_rate_limited_primary_429_fails_over(chain):
    primary, backup = chain
    primary.post_json("/control", {"mode": "ratelimit"})

    assert send().metadata[ACCEPTED_BY] == "twilio-backup"
    assert sends(backup) == 1


def test_no_free_connection_to_the_primary_fails_over_and_leaves_its_breaker_closed(chain, http_settings):
    """This process's own limit (PROVIDER_HTTP_MAX_CONNECTIONS) is no sign of the primary's health: the
    message goes to the backup (nothing reached the primary) and the primary's breaker counts nothing."""
    primary, backup = chain
    http_settings.PROVIDER_HTTP_MAX_CONNECTIONS = 1
    http_settings.PROVIDER_BREAKER_FAILURES = 1

    # An answer not read yet holds the primary's one slot.
    with http.client_for("twilio").stream("GET", f"{primary.url}/stats"):
        message = send()

    assert (message.status, message.metadata[ACCEPTED_BY]) == (MessageStatus.SENT, "twilio-backup")
    assert (primary.stats()["twilio"]["requests"], sends(backup)) == (0, 1)
    assert breaker_state(provider="twilio") == CLOSED
    assert send(1).metadata[ACCEPTED_BY] == "twilio", "the primary takes the next message again"


@pytest.mark.parametrize("mode", ["timeout", "reset"])
def test_no_failover_when_the_primary_may_have_accepted(chain, mode):
    """A timeout (the primary accepted and answered late) or a reset: the message stays with the
    primary, and its retry there is a replay of the same token."""
    primary, backup = chain
    primary.post_json("/control", {"mode": mode})

    message = send()

    assert message.status == MessageStatus.PENDING
    assert message.metadata[UNCONFIRMED_PROVIDER] == "twilio"
    assert backup.stats()["twilio"]["requests"] == 0
    primary.post_json("/control", {"mode": "normal"})

    [retried] = outbox_deliver_now(message_ids=[message.pk])

    assert (retried.status, retried.metadata[ACCEPTED_BY]) == (MessageStatus.SENT, "twilio")
    assert backup.stats()["twilio"]["requests"] == 0
    assert sends(primary) == 1
    assert UNCONFIRMED_PROVIDER not in retried.metadata


def test_a_message_the_primary_may_have_accepted_waits_for_it_while_its_breaker_is_open(chain):
    primary, backup = chain
    primary.post_json("/control", {"mode": "timeout"})
    unconfirmed = send(0)
    for index in range(1, 3):
        send(index)
    assert breaker_state(provider="twilio") == OPEN
    primary.post_json("/control", {"mode": "normal"})
    unconfirmed.refresh_from_db()
    timed_out = unconfirmed.last_error

    [retried] = outbox_deliver_now(message_ids=[unconfirmed.pk])

    # Not attempted at all: it waits, the attempt does not count, and support still sees the timeout.
    assert retried.status == MessageStatus.PENDING
    assert retried.attempt_base == unconfirmed.attempt_base + 1
    assert retried.last_error == timed_out
    assert backup.stats()["twilio"]["requests"] == 0


def test_a_500_is_retried_on_the_primary_not_failed_over(chain):
    _primary, backup = chain
    inject_fault("twilio", "500")
    message = send()

    assert message.status == MessageStatus.PENDING
    assert message.last_error["code"] == 20500
    assert backup.stats()["twilio"]["requests"] == 0


def test_the_breaker_opens_after_consecutive_failures_and_sends_skip_the_primary(chain):
    primary, backup = chain
    primary.post_json("/control", {"mode": "down"})

    for index in range(3):
        assert send(index).metadata[ACCEPTED_BY] == "twilio-backup"
    assert breaker_state(provider="twilio") == OPEN
    requests_when_opened = primary.stats()["twilio"]["requests"]

    for index in range(3, 6):
        assert send(index).metadata[ACCEPTED_BY] == "twilio-backup"

    assert primary.stats()["twilio"]["requests"] == requests_when_opened == 3
    assert sends(backup) == 6


def _half_open(primary, http_settings) -> None:
    """Opens the primary's breaker for 0.2 s with three failed sends, brings the primary back up and
    waits for the breaker to half-open."""
    http_settings.PROVIDER_BREAKER_OPEN_SECONDS = 0.2
    primary.post_json("/control", {"mode": "down"})
    for index in range(3):
        send(index)
    primary.post_json("/control", {"mode": "normal"})
    wait_for(lambda: breaker_state(provider="twilio") == HALF_OPEN, "the breaker to half-open")


def test_after_the_open_period_one_probe_closes_the_breaker(chain, http_settings):
    primary, _backup = chain
    _half_open(primary, http_settings)

    message = send(9)

    assert message.metadata[ACCEPTED_BY] == "twilio"
    assert breaker_state(provider="twilio") == CLOSED


def test_a_half_open_probe_that_found_no_free_connection_lets_the_next_caller_probe(chain, http_settings):
    """The probe never reached the primary (this process's own limit): the next send may probe at
    once instead of waiting out the probe's lease (2 x PROVIDER_TIMEOUT_SECONDS + 1)."""
    primary, _backup = chain
    _half_open(primary, http_settings)
    http_settings.PROVIDER_HTTP_MAX_CONNECTIONS = 1
    http.clients_close()  # the limit is read when a client is made

    with http.client_for("twilio").stream("GET", f"{primary.url}/stats"):
        assert send(8).metadata[ACCEPTED_BY] == "twilio-backup"
    message = send(9)

    assert message.metadata[ACCEPTED_BY] == "twilio", "the next send probed the primary"
    assert breaker_state(provider="twilio") == CLOSED


def test_failover_never_sends_a_message_twice(chain):
    """Twenty messages while the primary flips between down, timing out and up: every message is
    accepted exactly once over both providers, the one its record names."""
    primary, backup = chain
    modes = ["down", "normal", "timeout", "normal", "ratelimit"]
    messages = []
    for index in range(20):
        primary.post_json("/control", {"mode": modes[index % len(modes)]})
        messages.append(send(index))
    primary.post_json("/control", {"mode": "normal"})

    pending = [m.pk for m in messages if m.status == MessageStatus.PENDING]
    delivered = outbox_deliver_now(message_ids=pending)

    final = {m.pk: m for m in messages} | {m.pk: m for m in delivered}
    assert all(m.status == MessageStatus.SENT for m in final.values())
    assert sends(primary) + sends(backup) == 20
    assert sends(primary) == sum(1 for m in final.values() if m.metadata[ACCEPTED_BY] == "twilio")
    assert sends(backup) == sum(1 for m in final.values() if m.metadata[ACCEPTED_BY] == "twilio-backup")


def test_status_callbacks_of_the_backup_that_accepted_apply_to_the_message(chain, http_settings, live_server):
    """The backup account's signed callbacks (duplicated and reordered) reach Twilio's webhook and move
    the message it accepted to delivered."""
    primary, backup = chain
    http_settings.PUBLIC_BASE_URL = live_server.url
    backup.post_json("/control", {"callbacks": True, "duplicate_rate": 1, "out_of_order_rate": 1})
    primary.post_json("/control", {"mode": "down"})

    message = send()

    assert message.metadata[ACCEPTED_BY] == "twilio-backup"
    wait_for(lambda: backup.stats()["callbacks"]["delivered"] == 6, "the backup's six callbacks")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert backup.stats()["callbacks"]["failed"] == 0
