"""The contract every provider's webhooks keep, as a base class each provider's tests subclass
(after django-anymail's webhook test cases): signatures, dedupe, orphans and replay, bad input, batches.

A subclass says how its provider's requests look (``inbound``, ``status``, ``sign``) and which
settings hold its secret; every test below then runs against that provider's real endpoints.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
from django.core.management import call_command
from django.test import Client

from conversations.channels import CHANNELS
from messaging.models import Message
from tests.factories import MessageFactory
from webhooks.models import WebhookEvent

_ids = itertools.count(1)


class Request:
    def __init__(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        self.path = path
        self.body = body
        self.content_type = content_type


@pytest.mark.django_db
class WebhookContract:
    provider: ClassVar[str]
    channel: ClassVar[str]
    #: Setting name -> the secret list the tests configure.
    secrets: ClassVar[dict[str, list[str]]]
    #: Whether the status endpoint takes several events per request.
    status_batch: ClassVar[bool] = False

    # What a subclass provides ----------------------------------------------------------------------

    def inbound(self, event_id: str, *, sender: str | None = None, body: str = "Hello there") -> Request:
        raise NotImplementedError

    def invalid_inbound(self) -> Request:
        """A request whose one message is not usable (no sender)."""
        raise NotImplementedError

    def status(self, provider_message_id: str, status: str) -> Request:
        """A status event; ``status`` is one of delivered, failed (in the provider's own words)."""
        raise NotImplementedError

    def sign(self, request: Request, secret: str) -> dict[str, str]:
        raise NotImplementedError

    def outbound_id(self) -> str:
        """A provider message id in this provider's shape."""
        raise NotImplementedError

    # Helpers ---------------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _secrets(self, settings):
        for name, value in self.secrets.items():
            setattr(settings, name, value)

    @property
    def secret(self) -> str:
        return next(iter(self.secrets.values()))[0]

    def post(self, request: Request, *, signed: bool = True, secret: str | None = None):
        headers = self.sign(request, secret or self.secret) if signed else {}
        return Client().post(request.path, data=request.body, content_type=request.content_type, headers=headers)

    def new_id(self) -> str:
        return f"contract-{self.provider}-{next(_ids)}"

    def outbound_message(self, provider_message_id: str | None = None) -> Message:
        return MessageFactory(
            conversation__channel=self.channel,
            type=CHANNELS[self.channel].message_types[0],
            direction="outbound",
            status="sent",
            provider=self.provider,
            provider_message_id=provider_message_id or self.outbound_id(),
        )

    # The contract ----------------------------------------------------------------------------------

    def test_an_inbound_message_is_stored_once_in_its_thread_and_counted_unread(self):
        event_id = self.new_id()

        response = self.post(self.inbound(event_id))

        assert response.status_code == 200, response.content
        message = Message.objects.get(provider=self.provider, provider_message_id=event_id)
        assert (message.direction, message.status, message.channel) == ("inbound", "received", self.channel)
        assert message.conversation.unread_count == 1
        assert WebhookEvent.objects.get(provider=self.provider, event_id=event_id).outcome == "processed"

    def test_a_repeated_delivery_creates_nothing_and_answers_200(self):
        request = self.inbound(self.new_id())

        first, second = self.post(request), self.post(request)

        assert (first.status_code, second.status_code) == (200, 200)
        assert Message.objects.filter(provider=self.provider).count() == 1
        message = Message.objects.get(provider=self.provider)
        assert message.conversation.unread_count == 1
        outcomes = sorted(WebhookEvent.objects.filter(provider=self.provider).values_list("outcome", flat=True))
        assert outcomes == ["duplicate", "processed"]

    def test_a_wrong_signature_is_refused_403_and_kept_as_rejected(self):
        response = self.post(self.inbound(self.new_id()), secret="not-the-secret")

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_signature"
        assert not Message.objects.exists()
        event = WebhookEvent.objects.get(provider=self.provider)
        assert (event.outcome, event.rejection_code) == ("rejected", "invalid_signature")

    def test_a_missing_signature_is_refused_403(self):
        response = self.post(self.inbound(self.new_id()), signed=False)

        assert response.status_code == 403
        assert not Message.objects.exists()

    def test_a_rotated_secret_list_accepts_the_old_and_the_new(self, settings):
        name = next(iter(self.secrets))
        setattr(settings, name, ["new-secret", self.secret])

        assert self.post(self.inbound(self.new_id()), secret="new-secret").status_code == 200
        assert self.post(self.inbound(self.new_id())).status_code == 200

    def test_a_request_refused_for_its_signature_is_never_replayed(self):
        self.post(self.inbound(self.new_id()), secret="not-the-secret")
        event = WebhookEvent.objects.get(provider=self.provider)

        call_command("replay_webhooks", str(event.pk), stdout=open("/dev/null", "w"))  # noqa: SIM115

        event.refresh_from_db()
        assert event.outcome == "rejected"
        assert not Message.objects.exists()

    def test_an_unusable_message_is_rejected_and_stored_without_a_message(self):
        response = self.post(self.invalid_inbound())

        assert response.status_code in (200, 400)
        assert not Message.objects.exists()
        event = WebhookEvent.objects.get(provider=self.provider)
        assert event.outcome == "rejected"
        assert event.rejection_code == "validation_error"

    def test_a_status_moves_its_message_forward(self):
        message = self.outbound_message()

        response = self.post(self.status(message.provider_message_id, "delivered"))

        assert response.status_code == 200, response.content
        message.refresh_from_db()
        assert message.status == "delivered"

    def test_a_status_for_an_unknown_message_is_an_orphan_applied_by_replay_once_the_message_exists(self):
        provider_message_id = self.outbound_id()
        self.post(self.status(provider_message_id, "delivered"))
        orphan = WebhookEvent.objects.get(provider=self.provider, kind="status")
        assert orphan.outcome == "orphan"

        message = self.outbound_message(provider_message_id)
        call_command("replay_webhooks", "--provider", self.provider, stdout=open("/dev/null", "w"))  # noqa: SIM115
        call_command("replay_webhooks", "--provider", self.provider, stdout=open("/dev/null", "w"))  # noqa: SIM115

        orphan.refresh_from_db()
        message.refresh_from_db()
        assert (orphan.outcome, orphan.message_id, message.status) == ("processed", message.pk, "delivered")

    def test_a_repeated_status_is_a_duplicate_with_no_second_effect(self):
        message = self.outbound_message()
        request = self.status(message.provider_message_id, "delivered")

        self.post(request)
        self.post(request)

        outcomes = sorted(WebhookEvent.objects.filter(kind="status").values_list("outcome", flat=True))
        assert outcomes == ["duplicate", "processed"]


class FailureStatusContract:
    """For providers that report a failed delivery by webhook (Instagram does not)."""

    def test_a_failure_keeps_the_providers_error(self):
        message = self.outbound_message()

        self.post(self.status(message.provider_message_id, "failed"))

        message.refresh_from_db()
        assert message.status == "failed"
        assert message.last_error["code"]
