"""The conversation tally (ConversationTally) and the PostgreSQL triggers that keep it.

On other databases (SQLite, development) only the table is made; the inbox counts rows there."""

from django.db import migrations, models

TALLY = "conversations_conversationtally"
CONVERSATION = "conversations_conversation"
SHARDS = 64

CREATE = f"""
CREATE FUNCTION conversation_tally_add(p_channel varchar, p_status varchar, p_archived boolean, p_delta integer)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO {TALLY} AS t (shard, channel, status, archived, count)
    VALUES (pg_backend_pid() % {SHARDS}, p_channel, p_status, p_archived, p_delta)
    ON CONFLICT ON CONSTRAINT conversation_tally_key DO UPDATE SET count = t.count + EXCLUDED.count
$$;

CREATE FUNCTION conversation_tally_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM conversation_tally_add(OLD.channel, OLD.status, OLD.archived_at IS NOT NULL, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM conversation_tally_add(NEW.channel, NEW.status, NEW.archived_at IS NOT NULL, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_tally_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {TALLY};
    RETURN NULL;
END
$$;

CREATE TRIGGER conversation_tally_insert_delete AFTER INSERT OR DELETE ON {CONVERSATION}
    FOR EACH ROW EXECUTE FUNCTION conversation_tally_row();

-- Only an update that moves the row to another key runs the function; the WHEN is checked in place.
CREATE TRIGGER conversation_tally_update AFTER UPDATE OF channel, status, archived_at ON {CONVERSATION}
    FOR EACH ROW WHEN (
        OLD.channel IS DISTINCT FROM NEW.channel
        OR OLD.status IS DISTINCT FROM NEW.status
        OR (OLD.archived_at IS NULL) IS DISTINCT FROM (NEW.archived_at IS NULL)
    ) EXECUTE FUNCTION conversation_tally_row();

CREATE TRIGGER conversation_tally_truncate AFTER TRUNCATE ON {CONVERSATION}
    FOR EACH STATEMENT EXECUTE FUNCTION conversation_tally_reset();

-- What exists already. Creating the triggers locked the table against writes until this migration
-- commits, so nothing is counted twice or missed.
INSERT INTO {TALLY} (shard, channel, status, archived, count)
    SELECT 0, channel, status, archived_at IS NOT NULL, count(*) FROM {CONVERSATION}
    GROUP BY channel, status, archived_at IS NOT NULL;
"""

DROP = f"""
DROP TRIGGER IF EXISTS conversation_tally_truncate ON {CONVERSATION};
DROP TRIGGER IF EXISTS conversation_tally_update ON {CONVERSATION};
DROP TRIGGER IF EXISTS conversation_tally_insert_delete ON {CONVERSATION};
DROP FUNCTION IF EXISTS conversation_tally_reset();
DROP FUNCTION IF EXISTS conversation_tally_row();
DROP FUNCTION IF EXISTS conversation_tally_add(varchar, varchar, boolean, integer);
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # no placeholders: "%" is modulo


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0003_email_threads_case_insensitive"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConversationTally",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("shard", models.SmallIntegerField()),
                ("channel", models.CharField(max_length=16)),
                ("status", models.CharField(max_length=16)),
                ("archived", models.BooleanField()),
                ("count", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("shard", "channel", "status", "archived"), name="conversation_tally_key"
                    )
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
