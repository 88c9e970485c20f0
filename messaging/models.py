import uuid

from django.db import models

from conversations.channels import channel_choices, channel_names, message_type_choices, message_types
from conversations.models import Conversation


class Direction(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"


class MessageType(models.TextChoices):
    """Names for the types code refers to; the full list (and the CHECK) comes from the channel registry."""

    SMS = "sms", "SMS"
    MMS = "mms", "MMS"
    EMAIL = "email", "Email"
    WHATSAPP = "whatsapp", "WhatsApp"
    INSTAGRAM = "instagram", "Instagram"


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"
    RECEIVED = "received", "Received"


class Message(models.Model):
    # No index of its own: message_thread_idx starts with conversation_id.
    conversation = models.ForeignKey(Conversation, on_delete=models.PROTECT, related_name="messages", db_index=False)
    # Denormalised from the type so the idempotency key can be unique per channel in the database.
    channel = models.CharField(max_length=16, choices=channel_choices)
    direction = models.CharField(max_length=16, choices=Direction.choices)
    type = models.CharField(max_length=16, choices=message_type_choices)
    from_address = models.CharField(max_length=320)
    to_address = models.CharField(max_length=320)
    body = models.TextField(blank=True, default="")
    attachments = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices)
    provider = models.CharField(max_length=32, blank=True, default="")
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)
    client_message_id = models.CharField(max_length=255, null=True, blank=True)
    # Sent with every provider call for this message, so a provider that honours it never sends the
    # message twice. Random, so nobody can predict the provider id a mock derives from it.
    provider_token = models.UUIDField(default=uuid.uuid4, editable=False)
    # SHA-256 of the normalised send request: the same idempotency key with another body is refused.
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    # Every provider attempt started, the inline one included: counted when the attempt is claimed, so
    # an attempt lost in a crash still counts towards MAX_ATTEMPTS.
    attempts = models.PositiveIntegerField(default=0)
    # ``attempts`` when an operator last re-queued the message: it gets MAX_ATTEMPTS more from there.
    attempt_base = models.PositiveIntegerField(default=0)
    # For a pending message: when it is due (retry backoff).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While a sender (the inline attempt or an outbox worker) holds the message: until when. Nobody
    # else claims it before then; if the sender dies, the message is taken over afterwards.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.JSONField(null=True, blank=True)
    # The status the send request answered with; an idempotent repeat answers with the same code.
    first_outcome = models.CharField(max_length=16, blank=True, default="")
    timestamp = models.DateTimeField()
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # A provider's message is stored once per direction: an inbound id never collides with a
            # sid we were given for an outbound message, and status callbacks find that one by sid.
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                condition=models.Q(provider_message_id__isnull=False, direction="inbound"),
                name="message_unique_inbound_provider_id",
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                condition=models.Q(provider_message_id__isnull=False, direction="outbound"),
                name="message_unique_outbound_provider_id",
            ),
            models.UniqueConstraint(
                fields=["channel", "client_message_id"],
                condition=models.Q(client_message_id__isnull=False),
                name="message_unique_client_id",
            ),
            models.CheckConstraint(condition=models.Q(channel__in=channel_names()), name="message_channel_valid"),
            models.CheckConstraint(condition=models.Q(direction__in=Direction.values), name="message_direction_valid"),
            models.CheckConstraint(condition=models.Q(type__in=message_types()), name="message_type_valid"),
            models.CheckConstraint(condition=models.Q(status__in=MessageStatus.values), name="message_status_valid"),
            # The outbox only finds what is scheduled: a pending message without a time would be lost.
            models.CheckConstraint(
                condition=~models.Q(status="pending") | models.Q(next_attempt_at__isnull=False),
                name="message_pending_is_scheduled",
            ),
            models.CheckConstraint(
                condition=models.Q(attempt_base__lte=models.F("attempts")), name="message_attempt_base_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "timestamp", "id"], name="message_thread_idx"),
            # The outbox claims in (next_attempt_at, id) order: read from the index, never sorted.
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=models.Q(status="pending"),
                name="message_outbox_claim_idx",
            ),
            models.Index(fields=["status", "-created_at"], name="message_status_idx"),
            # The back office lists and charts messages by their own time, newest first.
            models.Index(fields=["-timestamp", "-id"], name="message_timestamp_idx"),
            # Status events that name a message by a prefix of its stored id (SendGrid's ".filter" tails):
            # a LIKE 'prefix%' needs the pattern operator class unless the database's collation is C.
            models.Index(
                fields=["provider", "provider_message_id"],
                opclasses=["varchar_pattern_ops", "varchar_pattern_ops"],
                condition=models.Q(direction="outbound", provider_message_id__isnull=False),
                name="message_outbound_id_prefix_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.direction} {self.type} {self.from_address} -> {self.to_address} ({self.status})"


class FailedMessage(Message):
    """Outbound messages that failed: the support view of what went wrong."""

    class Meta:
        proxy = True
        verbose_name = "failed message"
