"""``webhook_claiming_message()``: the message an inbound event's claim names, read with a snapshot of its own.

The inbound statement (webhooks/services.py) calls it after its claim was refused. That claim may have
waited for a concurrent delivery of the same event to commit, which the statement's own snapshot, taken
before the wait, cannot see. In READ COMMITTED every statement inside a VOLATILE PL/pgSQL function
takes a new snapshot, so the function sees the committed claim, and a duplicate of a concurrent
delivery is stored in the same statement too. The outcomes are webhooks.models.CLAIMING_OUTCOMES.

On other databases (SQLite, development) nothing is made: the service takes its general path there."""

from django.db import migrations

CREATE = """
CREATE FUNCTION webhook_claiming_message(p_provider varchar, p_kind varchar, p_event_id varchar)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (
        SELECT message_id FROM webhooks_webhookevent
        WHERE provider = p_provider AND kind = p_kind AND event_id = p_event_id
            AND outcome IN ('processed', 'orphan') AND message_id IS NOT NULL
        LIMIT 1
    );
END
$$;
"""

DROP = "DROP FUNCTION IF EXISTS webhook_claiming_message(varchar, varchar, varchar);"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0004_rejection_code"),
    ]

    operations = [
        migrations.RunPython(create_function, drop_function, elidable=False),
    ]
