"""Demo data for ``manage.py seed_demo``: realistic contacts and threads on every channel, with failures,
pending retries, statuses and the webhook events behind them. Built with factory-boy and Faker, seeded
per conversation, so the same command makes the same rows and a second run adds nothing."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import factory
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from faker import Faker

from conversations.channels import CHANNELS, channel_choices
from conversations.models import Conversation
from conversations.services import conversation_get_or_create, conversation_recompute_summary
from messaging.models import Direction, Message, MessageStatus
from messaging.services import provider_for_channel
from webhooks.models import WebhookEvent, WebhookKind, WebhookOutcome

#: Every demo row's idempotency key or provider id starts with this: how a re-run recognises its rows.
DEMO_PREFIX = "demo-"

SMS_LINES = [
    "Hi, is my order #{n} shipped yet?",
    "Can I change my delivery address?",
    "Thanks! Got it.",
    "The tracking link doesn't work for me",
    "What time do you open on Saturday?",
    "I was charged twice for order #{n}, can you check?",
    "Perfect, see you then",
    "STOP",
]
AGENT_LINES = [
    "Hi {name}, thanks for reaching out! Let me check that for you.",
    "Your order #{n} left our warehouse this morning.",
    "I've refunded the duplicate charge; it shows within 3-5 business days.",
    "We open at 9:00 on Saturdays.",
    "Here is the new tracking link: https://track.example.com/{n}",
    "Anything else I can help with?",
]
EMAIL_BODIES = [
    "<p>Hello,</p><p>I ordered a <b>blue jacket</b> (order #{n}) but received a red one. "
    "Can you send the right one?</p><p>Best,<br>{name}</p>",
    "<html><body><p>Hi team,</p><p>Please find my invoice request attached.</p>"
    "<ul><li>Order: #{n}</li><li>Company: {company}</li></ul><p>Thanks</p></body></html>",
    # Hostile HTML, as senders write it: the back office must show it sanitised, never run it.
    '<p onclick="alert(1)">Click <a href="javascript:alert(2)">here</a> for a <b>prize</b></p>'
    "<script>alert('xss')</script><img src=https://tracker.example.com/pixel.gif><style>p{{color:red}}</style>",
]
AGENT_EMAILS = [
    "<p>Hi {name},</p><p>Sorry about that! A replacement for order #{n} is on its way.</p><p>— Support</p>",
    "<p>Hi {name},</p><p>Your invoice is attached. Let us know if anything is missing.</p>",
]
FAILURES = {
    "email": [{"code": 550, "message": "Mailbox unavailable"}, {"code": 400, "message": "Invalid 'to' address"}],
    "default": [
        {"code": 30003, "message": "Unreachable destination handset"},
        {"code": 21211, "message": "Invalid 'To' Phone Number"},
        {"code": 21610, "message": "Attempt to send to unsubscribed recipient"},
    ],
}
TRANSIENT = [{"code": 503, "message": "Service Unavailable"}, {"code": 429, "message": "Too Many Requests"}]

#: The business's own address per kind of address; a channel not listed uses a phone number.
BUSINESS_ADDRESSES = {"email": "support@usehatchapp.com", "instagram": "17841400000000001"}
BUSINESS_PHONE = "+12016661234"


def channels() -> list[str]:
    """Every channel the Conversation model accepts that has a provider and a message type."""
    usable = []
    for value, _ in channel_choices():
        try:
            provider_for_channel(value)
        except ImproperlyConfigured:  # a channel without a provider yet is skipped, not fatal
            continue
        if _message_type(value, attachments=False):
            usable.append(value)
    return usable


def _message_type(channel: str, *, attachments: bool) -> str | None:
    spec = CHANNELS.get(channel)
    if spec is None:
        return None
    sample = ["https://example.com/a.jpg"] if attachments else []
    return spec.message_type(requested=None, from_address="", to_address="", attachments=sample)


def _business(channel: str) -> str:
    spec = CHANNELS.get(channel)
    return (spec.default_sender if spec else None) or BUSINESS_ADDRESSES.get(channel, BUSINESS_PHONE)


class ContactFactory(factory.Factory):
    """A customer: a name and an address fitting the channel."""

    class Meta:
        model = dict

    class Params:
        channel = "sms"
        fake = None

    name = factory.LazyAttribute(lambda o: o.fake.name())
    company = factory.LazyAttribute(lambda o: o.fake.company())
    address = factory.LazyAttribute(
        lambda o: (
            f"{o.name.split()[0]}.{o.name.split()[-1]}@{o.fake.free_email_domain()}"
            if o.channel == "email"
            else str(o.fake.random_number(digits=17, fix_len=True))
            if o.channel == "instagram"
            else f"+1{o.fake.random_element(['415', '628', '212', '646', '312', '512'])}555{o.fake.numerify('####')}"
        )
    )


class DemoMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    channel = factory.SelfAttribute("conversation.channel")
    attachments = factory.LazyFunction(list)
    metadata = factory.LazyFunction(lambda: {"demo": True})


def _status_for(rng: random.Random, *, newest: bool, age: timedelta) -> str:
    roll = rng.random()
    if newest and roll < 0.12:
        return MessageStatus.PENDING
    if roll < 0.1:
        return MessageStatus.FAILED
    if roll < 0.3 or age < timedelta(minutes=5):
        return MessageStatus.SENT
    if "read" in MessageStatus.values and roll < 0.5:
        return "read"
    return MessageStatus.DELIVERED


def seed_conversation(index: int, *, now: datetime) -> bool:
    """Makes demo conversation number ``index`` unless it exists. Returns whether it was made."""
    available = channels()
    channel = available[index % len(available)]
    fake = Faker()
    fake.seed_instance(index)
    rng = random.Random(index)
    first = f"{DEMO_PREFIX}{index}-0"  # the first message's id, inbound or outbound
    if Message.objects.filter(
        Q(provider_message_id=first, direction=Direction.INBOUND) | Q(client_message_id=first)
    ).exists():
        return False
    contact: dict[str, str] = ContactFactory(channel=channel, fake=fake)  # type: ignore[assignment]
    if channel == "email" and index % 7 == 3:
        contact["address"] = contact["address"].title()  # capitals that must still thread with the rest
    business = _business(channel)
    provider = provider_for_channel(channel).name
    length = rng.choice([2, 3, 4, 6, 8, 12]) if index % 25 else 120
    start = now - timedelta(minutes=rng.randint(10, 47 * 60))
    gap = max((now - start) / (length + 1), timedelta(seconds=30))
    with transaction.atomic():
        conversation = conversation_get_or_create(channel=channel, address_1=business, address_2=contact["address"])
        for position in range(length):
            # Most threads end with our reply; every fifth ends with the customer's message (awaiting reply).
            inbound = (length - 1 - position) % 2 == (0 if index % 5 == 0 else 1)
            timestamp = start + gap * position + timedelta(seconds=rng.randint(0, 59))
            newest = position == length - 1
            fill = {
                "name": contact["name"].split()[0],
                "n": 10000 + index * 7 + position,
                "company": contact["company"],
            }
            attach = channel == "sms" and rng.random() < 0.1
            if channel == "email":
                body = (EMAIL_BODIES if inbound else AGENT_EMAILS)[rng.randrange(3 if inbound else 2)].format(**fill)
                attachments = [f"https://files.example.com/invoice-{fill['n']}.pdf"] if rng.random() < 0.3 else []
            else:
                body = rng.choice(SMS_LINES if inbound else AGENT_LINES).format(**fill)
                attachments = [f"https://files.example.com/photo-{fill['n']}.jpg"] if attach else []
            kind = _message_type(channel, attachments=bool(attachments))
            fields = {
                "conversation": conversation,
                "type": kind,
                "body": body,
                "attachments": attachments,
                "timestamp": timestamp,
                "provider": provider,
            }
            if inbound:
                DemoMessageFactory(
                    **fields,
                    direction=Direction.INBOUND,
                    from_address=contact["address"],
                    to_address=business,
                    status=MessageStatus.RECEIVED,
                    provider_message_id=f"{DEMO_PREFIX}{index}-{position}",
                )
                continue
            status = _status_for(rng, newest=newest, age=now - timestamp)
            extra = {"attempts": 1, "first_outcome": status}
            if status == MessageStatus.FAILED:
                extra["last_error"] = rng.choice(FAILURES.get(channel, FAILURES["default"]))
            if status == MessageStatus.PENDING:
                overdue = rng.random() < 0.5
                extra |= {
                    "attempts": rng.randint(2, 4),
                    "last_error": rng.choice(TRANSIENT),
                    "next_attempt_at": now - timedelta(hours=3)
                    if overdue
                    else now + timedelta(minutes=rng.randint(2, 30)),
                    "first_outcome": MessageStatus.PENDING,
                }
            message: Message = DemoMessageFactory(  # type: ignore[assignment]
                **fields,
                direction=Direction.OUTBOUND,
                from_address=business,
                to_address=contact["address"],
                status=status,
                client_message_id=f"{DEMO_PREFIX}{index}-{position}",
                provider_message_id=None if status == MessageStatus.PENDING else f"{DEMO_PREFIX}out-{index}-{position}",
                **extra,
            )
            if status not in (MessageStatus.PENDING, MessageStatus.SENT):
                _status_event(message, status)
        if index % 4 == 1:
            Conversation.objects.filter(pk=conversation.pk).update(last_read_at=now)
        if index % 11 == 5:
            Conversation.objects.filter(pk=conversation.pk).update(status="closed")
        if index % 13 == 6:
            Conversation.objects.filter(pk=conversation.pk).update(status="closed", archived_at=now)
        conversation_recompute_summary(conversation_id=conversation.pk)
        if index % 9 == 2:
            _rejected_event(index, provider)
    return True


def _status_event(message: Message, status: str) -> None:
    body = {"MessageSid": message.provider_message_id, "MessageStatus": status}
    if message.last_error:
        body |= {"ErrorCode": str(message.last_error["code"]), "ErrorMessage": message.last_error["message"]}
    WebhookEvent.objects.get_or_create(
        provider=message.provider,
        kind=WebhookKind.STATUS,
        event_id=f"{message.provider_message_id}:{status}",
        outcome=WebhookOutcome.PROCESSED,
        defaults={
            "event_type": status,
            "provider_message_id": message.provider_message_id or "",
            "message": message,
            "note": f"status -> {status}",
            "content_type": "application/json",
            "body": json.dumps(body),
            "processed_at": message.timestamp + timedelta(seconds=5),
        },
    )


def _rejected_event(index: int, provider: str) -> None:
    WebhookEvent.objects.get_or_create(
        provider=provider,
        kind=WebhookKind.INBOUND,
        event_id=f"{DEMO_PREFIX}rejected-{index}",
        outcome=WebhookOutcome.REJECTED,
        defaults={
            "error": "invalid_signature: the request's signature does not match",
            "content_type": "application/json",
            "body": json.dumps({"from": "+15555550100", "body": "forged"}),
        },
    )


def seed_demo(*, conversations: int, progress: Callable[[int, int], None] | None = None) -> int:
    """Makes the first ``conversations`` demo conversations that do not exist yet; returns how many."""
    now = timezone.now()
    made = 0
    for index in range(conversations):
        made += seed_conversation(index, now=now)
        if progress:
            progress(index + 1, conversations)
    return made
