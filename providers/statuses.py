"""What a provider's status callback means for our message: the mapping tables.

Each provider status or event maps to one of our delivery statuses, to ``RECORD_ONLY`` (kept with the
message, no status change: opens, clicks, deferrals) or, when we have never heard of it, to
``UNKNOWN`` (kept raw, no status change, logged) so that a provider adding a status never breaks
intake. Values are plain strings: ``providers`` imports no models.
"""

from __future__ import annotations

SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
RECORD_ONLY = "record_only"
UNKNOWN = "unknown"

#: Twilio's MessageStatus values for outbound messages.
TWILIO_STATUSES: dict[str, str] = {
    "accepted": SENT,
    "scheduled": SENT,
    "queued": SENT,
    "sending": SENT,
    "sent": SENT,
    "delivered": DELIVERED,
    "partially_delivered": DELIVERED,
    "read": DELIVERED,
    "undelivered": FAILED,
    "failed": FAILED,
    "canceled": FAILED,
    # Inbound-side statuses: nothing to change on an outbound message.
    "receiving": RECORD_ONLY,
    "received": RECORD_ONLY,
}

#: The documented meaning of Twilio's common delivery error codes, used when ErrorMessage is absent.
TWILIO_ERROR_MESSAGES: dict[str, str] = {
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "30010": "Message price exceeds max price",
    "21610": "Recipient has unsubscribed (STOP)",
    "21614": "Not a valid mobile number",
}

#: SendGrid Event Webhook ``event`` values.
SENDGRID_EVENTS: dict[str, str] = {
    "processed": SENT,
    "delivered": DELIVERED,
    "bounce": FAILED,
    "blocked": FAILED,
    "dropped": FAILED,
    # Delivery is still being attempted by SendGrid; nothing has changed for us yet.
    "deferred": RECORD_ONLY,
    # Engagement: recorded with the message, never a status change.
    "open": RECORD_ONLY,
    "click": RECORD_ONLY,
    "spamreport": RECORD_ONLY,
    "unsubscribe": RECORD_ONLY,
    "group_unsubscribe": RECORD_ONLY,
    "group_resubscribe": RECORD_ONLY,
}


def twilio_status(value: str) -> str:
    return TWILIO_STATUSES.get(value.strip().lower(), UNKNOWN)


def sendgrid_event(value: str) -> str:
    return SENDGRID_EVENTS.get(value.strip().lower(), UNKNOWN)


def canonical_message_id(provider: str, provider_message_id: str) -> str:
    """The part of a provider's message id that identifies the message in every event about it.

    SendGrid answers a send with ``X-Message-Id`` and reports events with ``sg_message_id``, which is
    that id followed by ``.filter...``; both reduce to the part before ``.filter``.
    """
    if provider == "sendgrid":
        return provider_message_id.split(".filter", 1)[0]
    return provider_message_id
