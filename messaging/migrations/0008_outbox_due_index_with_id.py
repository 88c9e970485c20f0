"""The outbox's due index gains ``id``: a claim reads its batch in (next_attempt_at, id) order straight
from the index, instead of sorting every due row when many fall due at the same moment (a backlog, or
a burst of queued sends). Built before the old index is dropped, both without blocking writes."""

from django.db import migrations, models

from core.migration_operations import PortableAddIndexConcurrently, PortableRemoveIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("messaging", "0007_outbound_id_prefix_index"),
    ]

    operations = [
        PortableAddIndexConcurrently(
            model_name="message",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["next_attempt_at", "id"],
                name="message_outbox_claim_idx",
            ),
        ),
        PortableRemoveIndexConcurrently(model_name="message", name="message_outbox_due_idx"),
    ]
