"""Which message a provider's status event is about."""

import pytest

from messaging.selectors import message_find_outbound
from tests.factories import MessageFactory, OutboxMessageFactory

pytestmark = pytest.mark.django_db


def test_a_status_whose_sid_equals_an_inbound_messages_id_is_not_applied_to_the_inbound_message():
    # Inbound and outbound ids share the provider's id space only by accident; a status is about a send.
    MessageFactory(direction="inbound", provider="twilio", provider_message_id="SMshared")
    assert message_find_outbound(provider="twilio", provider_message_id="SMshared") is None


def test_the_outbound_message_with_that_sid_is_found_beside_an_inbound_one_with_the_same_id():
    inbound = MessageFactory(direction="inbound", provider="twilio", provider_message_id="SMshared")
    sent = OutboxMessageFactory(status="sent", provider="twilio", provider_message_id="SMshared")
    assert inbound.pk < sent.pk  # the inbound one would come first without the direction filter
    assert message_find_outbound(provider="twilio", provider_message_id="SMshared") == sent
