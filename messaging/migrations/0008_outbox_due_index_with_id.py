"""The outbox's due index gains ``id``: a claim reads its batch in (next_attempt_at, id) order straight
from the index, instead of sorting every due row when many fall due at the same moment (a backlog, or
a burst of queued sends). The new index is built before the old one is dropped, in one transaction
like the project's other index migrations (PostgreSQL blocks writes to the table while it builds)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0007_outbound_id_prefix_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["next_attempt_at", "id"],
                name="message_outbox_claim_idx",
            ),
        ),
        migrations.RemoveIndex(model_name="message", name="message_outbox_due_idx"),
    ]
