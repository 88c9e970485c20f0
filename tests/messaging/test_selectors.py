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


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_thread_page_is_the_orm_querys_page_in_either_order(order):
    """The prepared thread statement orders by timestamp, then id: messages stored out of timestamp
    order and messages with the same timestamp come back as the ORM query gives them, page by page."""
    from datetime import timedelta

    from django.utils import timezone

    from core.pagination import PageRequest
    from messaging.models import Message
    from messaging.selectors import message_thread_page
    from tests.factories import MessageFactory

    now = timezone.now()
    first = MessageFactory(timestamp=now)
    for minutes in [5, -3, 0, 0, 7, -3, 2]:  # a late message with an older timestamp, and ties
        MessageFactory(conversation=first.conversation, timestamp=now + timedelta(minutes=minutes))
    MessageFactory(timestamp=now)  # another conversation's
    ordering = ["timestamp", "id"] if order == "asc" else ["-timestamp", "-id"]
    expected = list(
        Message.objects.filter(conversation=first.conversation).order_by(*ordering).values_list("pk", flat=True)
    )

    pages = [
        message_thread_page(conversation_id=first.conversation_id, order=order, page=PageRequest(page=number, limit=3))
        for number in (1, 2, 3)
    ]

    assert [message.pk for messages, _ in pages for message in messages] == expected
    assert expected != sorted(expected, reverse=order == "desc"), "the timestamps must not follow the ids"
    assert {total for _, total in pages} == {8}
