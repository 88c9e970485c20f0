"""E-mail threads compare addresses case-insensitively; threads know the direction of their newest message.

Conversations whose participants differ only by the case of an e-mail address are merged into the
oldest one: its messages moved, counters recomputed from the merged rows, participants lower-cased.
Messages keep the addresses as they were sent.
"""

from django.db import migrations, models
from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Greatest, Least, Lower


def _thread_address(address):
    return address.lower() if "@" in address else address


def merge_case_variants(apps, schema_editor):
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("messaging", "Message")
    email_threads = Conversation.objects.filter(
        models.Q(participant_a__contains="@") | models.Q(participant_b__contains="@")
    )
    groups = (
        email_threads.values("channel")
        .annotate(
            low=Least(Lower("participant_a"), Lower("participant_b")),
            high=Greatest(Lower("participant_a"), Lower("participant_b")),
        )
        .annotate(rows=Count("id"))
        .filter(rows__gt=1)
    )
    for group in list(groups):
        members = [
            c
            for c in email_threads.filter(channel=group["channel"]).order_by("id")
            if sorted((c.participant_a.lower(), c.participant_b.lower())) == sorted((group["low"], group["high"]))
        ]
        if len(members) < 2:
            continue
        keeper, others = members[0], members[1:]
        Message.objects.filter(conversation_id__in=[c.pk for c in others]).update(conversation_id=keeper.pk)
        newest = max(members, key=lambda c: (c.last_message_at is not None, c.last_message_at or keeper.created_at))
        read_times = [c.last_read_at for c in members if c.last_read_at]
        keeper.message_count = Message.objects.filter(conversation_id=keeper.pk).count()
        keeper.unread_count = sum(c.unread_count for c in members)
        keeper.last_read_at = max(read_times) if read_times else None
        keeper.last_message_at = newest.last_message_at
        keeper.last_message_preview = newest.last_message_preview
        keeper.status = "open" if any(c.status == "open" for c in members) else "closed"
        keeper.archived_at = None if any(c.archived_at is None for c in members) else max(c.archived_at for c in members)
        Conversation.objects.filter(pk__in=[c.pk for c in others]).delete()
        keeper.save()
    # Every e-mail thread (merged or not) keys on lower-case addresses from now on.
    for conversation in email_threads.order_by("id").iterator():
        a, b = sorted((_thread_address(conversation.participant_a), _thread_address(conversation.participant_b)))
        if (a, b) != (conversation.participant_a, conversation.participant_b):
            Conversation.objects.filter(pk=conversation.pk).update(participant_a=a, participant_b=b)


def backfill_last_direction(apps, schema_editor):
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("messaging", "Message")
    newest = Message.objects.filter(conversation_id=OuterRef("pk")).order_by("-timestamp", "-id").values("direction")
    Conversation.objects.update(last_message_direction=Coalesce(Subquery(newest[:1]), Value("")))


class PortableAddField(migrations.AddField):
    """On SQLite (development only) Django adds a NOT NULL column by rebuilding the table, which
    re-creates the NULLS LAST activity index SQLite cannot express; a plain ADD COLUMN needs no rebuild."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        schema_editor.execute(
            'ALTER TABLE "conversations_conversation" ADD COLUMN "last_message_direction" varchar(16) NOT NULL DEFAULT \'\''
        )


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0002_channel_registry"),
        ("messaging", "0004_message_lease"),
    ]

    operations = [
        PortableAddField(
            model_name="conversation",
            name="last_message_direction",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.RunPython(merge_case_variants, migrations.RunPython.noop),
        migrations.RunPython(backfill_last_direction, migrations.RunPython.noop),
    ]
