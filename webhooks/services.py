"""Webhook intake: every request stored, each provider event processed at most once.

Deduplication is the database's job: the first delivery of an event id inserts a row with a
claiming outcome, which a partial unique index makes exclusive. A concurrent duplicate's INSERT waits
for the first transaction and then fails, so exactly one delivery creates the message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging.models import Direction, Message
from messaging.services import InboundMessage, message_receive
from webhooks.models import CLAIMING_OUTCOMES, WebhookEvent, WebhookOutcome
from webhooks.parsing import RawWebhook

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookResult:
    event: WebhookEvent
    message: Message | None

    @property
    def duplicate(self) -> bool:
        return self.event.outcome == WebhookOutcome.DUPLICATE


def _event(raw: RawWebhook, *, outcome: str, event_id: str = "", **fields) -> WebhookEvent:
    return WebhookEvent(
        provider=raw.provider,
        kind=raw.kind,
        event_id=event_id,
        outcome=outcome,
        headers=raw.headers,
        content_type=raw.content_type[:255],
        body=raw.body,
        **fields,
    )


def _storable(text: str) -> str:
    """Text a PostgreSQL text column accepts: no NUL, no lone surrogates."""
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


def webhook_record_rejected(*, raw: RawWebhook, error: str, event_id: str = "") -> WebhookEvent:
    event = _event(raw, outcome=WebhookOutcome.REJECTED, event_id=_storable(event_id[:255]), error=_storable(error))
    event.save()
    return event


def webhook_receive_inbound(*, raw: RawWebhook, inbound: InboundMessage) -> WebhookResult:
    """Stores the event and its message together; a repeated event id creates nothing new."""
    event_id = inbound.provider_message_id
    try:
        with transaction.atomic():
            event = _event(raw, outcome=WebhookOutcome.PROCESSED, event_id=event_id, processed_at=timezone.now())
            event.save()
            message = message_receive(inbound=inbound)
            event.message = message
            event.save(update_fields=["message"])
    except IntegrityError as exc:
        original = _claimed_message(raw=raw, inbound=inbound)
        if original is None:
            _record_error(raw=raw, event_id=event_id, exc=exc)
            raise
        duplicate = _event(
            raw, outcome=WebhookOutcome.DUPLICATE, event_id=event_id, message=original, processed_at=timezone.now()
        )
        duplicate.save()
        return WebhookResult(event=duplicate, message=original)
    except Exception as exc:
        _record_error(raw=raw, event_id=event_id, exc=exc)
        raise
    return WebhookResult(event=event, message=message)


def _record_error(*, raw: RawWebhook, event_id: str, exc: Exception) -> None:
    """Keeps a request whose processing failed; it claims nothing, so the provider's retry is processed."""
    logger.exception("Webhook %s/%s failed", raw.provider, event_id)
    _event(raw, outcome=WebhookOutcome.ERROR, event_id=event_id, error=_storable(f"{type(exc).__name__}: {exc}")).save()


def _claimed_message(*, raw: RawWebhook, inbound: InboundMessage) -> Message | None:
    """The message an earlier delivery of this event created, if that is why the insert failed."""
    claim = (
        WebhookEvent.objects.filter(
            provider=raw.provider, event_id=inbound.provider_message_id, outcome__in=CLAIMING_OUTCOMES
        )
        .select_related("message")
        .first()
    )
    if claim is not None and claim.message is not None:
        return claim.message
    return Message.objects.filter(
        direction=Direction.INBOUND, provider=inbound.provider, provider_message_id=inbound.provider_message_id
    ).first()
