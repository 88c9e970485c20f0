from django.db import models

from messaging.models import Message


class WebhookKind(models.TextChoices):
    INBOUND = "inbound", "Inbound message"
    STATUS = "status", "Status callback"
    DELIVERY = "delivery", "Whole delivery (refused before its items were read)"


class WebhookOutcome(models.TextChoices):
    PROCESSED = "processed", "Processed"
    DUPLICATE = "duplicate", "Duplicate"
    ORPHAN = "orphan", "Orphan (message not known yet)"
    REJECTED = "rejected", "Rejected"
    ERROR = "error", "Error"


#: Outcomes that claim an event id. Duplicates, rejections and errors never do, so a provider's
#: corrected retry of a rejected or failed delivery is still processed.
CLAIMING_OUTCOMES = [WebhookOutcome.PROCESSED, WebhookOutcome.ORPHAN]


class WebhookEvent(models.Model):
    """Every request a provider made, kept raw, with what processing made of it."""

    provider = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=WebhookKind.choices)
    event_id = models.CharField(max_length=255, blank=True, default="")
    # Status events: the provider's status or event name, and the message id it is about (for
    # SendGrid without the ".filter..." suffix), so an orphan is found when that message appears.
    event_type = models.CharField(max_length=64, blank=True, default="")
    provider_message_id = models.CharField(max_length=255, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=WebhookOutcome.choices)
    error = models.TextField(blank=True, default="")
    # The error code a rejection was answered with (invalid_signature, validation_error, ...), as data:
    # a request whose signature failed is never replayed.
    rejection_code = models.CharField(max_length=64, blank=True, default="")
    # What processing did, for support staff: "sent -> delivered", "kept: already delivered", ...
    note = models.CharField(max_length=255, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)
    content_type = models.CharField(max_length=255, blank=True, default="")
    body = models.TextField(blank=True, default="")
    # False when the body is not exactly the bytes received (invalid UTF-8 or NUL were replaced):
    # such a request is never replayed, since the replay would not see what the provider sent.
    body_exact = models.BooleanField(default=True)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Per kind: an inbound message id and a status event id are separate namespaces.
            models.UniqueConstraint(
                fields=["provider", "kind", "event_id"],
                condition=models.Q(outcome__in=CLAIMING_OUTCOMES),
                name="webhook_event_unique_claim",
            ),
            models.CheckConstraint(condition=models.Q(kind__in=WebhookKind.values), name="webhook_event_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(outcome__in=WebhookOutcome.values), name="webhook_event_outcome_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["provider", "event_id"], name="webhook_event_lookup_idx"),
            models.Index(fields=["outcome", "-received_at"], name="webhook_event_outcome_idx"),
            models.Index(
                fields=["provider", "provider_message_id"],
                condition=models.Q(outcome="orphan"),
                name="webhook_event_orphan_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.event_id or '-'} ({self.outcome})"
