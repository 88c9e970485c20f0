"""Adding a provider is its module, a registry entry and its tests: a toy provider, defined here and
registered in the test, sends a channel's messages and receives on its own webhook with no other change."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from django.test import Client
from django.urls import clear_url_caches

from messaging.models import Message
from providers import registry
from providers.base import (
    INBOUND,
    InboundMessage,
    OutboundMessage,
    Provider,
    RawWebhook,
    SendResult,
    WebhookEndpoint,
    WebhookItem,
)
from providers.payloads import json_object, required_text

pytestmark = pytest.mark.django_db


class ToyProvider(Provider):
    name = "toy"
    simulates_failures = True
    secret_settings: ClassVar[tuple[str, ...]] = ()
    sent: ClassVar[list[OutboundMessage]] = []

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        return SendResult(provider=self.name, provider_message_id=f"toy-{message.idempotency_token}", status="ok")

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return [WebhookEndpoint(path="toy", kind=INBOUND, parse=self.parse)]

    def parse(self, raw: RawWebhook) -> list[WebhookItem]:
        payload = json_object(raw)
        inbound = InboundMessage(
            channel="sms",
            type=None,
            provider=self.name,
            provider_message_id=required_text(payload, "id"),
            from_address=required_text(payload, "sender"),
            to_address="+12016661234",
            body=str(payload.get("text", "")),
            timestamp=None,
        )
        return [WebhookItem(raw=raw, kind=INBOUND, parsed=inbound, event_id=inbound.provider_message_id)]

    def parse_stored(self, raw: RawWebhook) -> WebhookItem:
        return self.parse(raw)[0]


@pytest.fixture
def toy_registered(monkeypatch, settings):
    monkeypatch.setitem(registry.PROVIDERS, "toy", f"{__name__}.ToyProvider")
    settings.MESSAGE_PROVIDERS = {"sms": "toy"}
    # Routes are made from the registry when the URLconf loads: load it again with the toy in it.
    import importlib

    import config.urls

    importlib.reload(config.urls)
    clear_url_caches()
    yield
    monkeypatch.undo()
    importlib.reload(config.urls)
    clear_url_caches()


def test_a_registered_provider_sends_its_channels_messages(api, toy_registered):
    response = api.post(
        "/api/messages/sms", {"from": "+12016661234", "to": "+18045551234", "body": "hi"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["provider"] == "toy"
    assert ToyProvider.sent[-1].body == "hi"


def test_a_registered_provider_gets_its_webhook_with_signatures_dedupe_and_threads(toy_registered):
    body = json.dumps({"id": "toy-1", "sender": "+18045551234", "text": "hello"})

    first = Client().post("/api/webhooks/toy", data=body, content_type="application/json")
    again = Client().post("/api/webhooks/toy/", data=body, content_type="application/json")

    assert (first.json()["status"], again.json()["status"]) == ("processed", "duplicate")
    message = Message.objects.get()
    assert (message.provider, message.channel, message.conversation.unread_count) == ("toy", "sms", 1)
