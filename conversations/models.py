from django.db import models

from conversations.channels import channel_choices, channel_names


class ConversationStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Conversation(models.Model):
    """A thread between two normalised addresses on one channel.

    ``participant_a <= participant_b`` always, so A->B and B->A find the same row; the unique
    constraint makes find-or-create safe under concurrency.
    """

    # One of the channel registry's names (conversations/channels.py); ``sms`` carries SMS and MMS.
    channel = models.CharField(max_length=16, choices=channel_choices)
    participant_a = models.CharField(max_length=320)
    participant_b = models.CharField(max_length=320)
    status = models.CharField(max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_message_preview = models.CharField(max_length=160, blank=True, default="")
    # Direction of the newest message: "inbound" means the contact is waiting for our reply.
    last_message_direction = models.CharField(max_length=16, blank=True, default="")
    message_count = models.PositiveIntegerField(default=0)
    unread_count = models.PositiveIntegerField(default=0)
    last_read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # participant_a leads so the same index serves "conversations of this participant".
            models.UniqueConstraint(
                fields=["participant_a", "participant_b", "channel"], name="conversation_unique_participants"
            ),
            models.CheckConstraint(condition=models.Q(channel__in=channel_names()), name="conversation_channel_valid"),
            models.CheckConstraint(
                condition=models.Q(status__in=ConversationStatus.values), name="conversation_status_valid"
            ),
        ]
        indexes = [
            # Matches the inbox ORDER BY exactly (NULLS LAST), so a page is an index range scan.
            models.Index(
                models.F("last_message_at").desc(nulls_last=True),
                models.F("id").desc(),
                name="conversation_activity_idx",
            ),
            models.Index(fields=["participant_b"], name="conversation_participant_b_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {self.participant_a} <-> {self.participant_b}"

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def participants(self) -> list[str]:
        return [self.participant_a, self.participant_b]


class ConversationTally(models.Model):
    """How many conversations there are per (channel, status, archived): the inbox's ``total`` without
    counting 100,000 rows on every page.

    Kept by PostgreSQL triggers on the conversation table (migration 0004), so every write counts,
    whichever code path makes it: a row insert adds one, a delete takes one away, an update that
    changes the channel, the status or whether the thread is archived moves one between keys. Writers
    add to the rows of their own ``shard`` (their backend's pid modulo ``SHARDS``), so concurrent
    writers rarely wait on one counter row; a key's total is the sum over its shards, whose rows may be
    negative on their own. Elsewhere (SQLite, development) no trigger exists and the inbox counts rows.
    """

    SHARDS = 64

    shard = models.SmallIntegerField()
    channel = models.CharField(max_length=16)
    status = models.CharField(max_length=16)
    archived = models.BooleanField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["shard", "channel", "status", "archived"], name="conversation_tally_key")
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.status}/{'archived' if self.archived else 'inbox'}#{self.shard}: {self.count}"
