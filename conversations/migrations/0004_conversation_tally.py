"""The conversation tally (ConversationTally) and the PostgreSQL triggers that keep it.

On other databases (SQLite, development) only the table is made; the inbox counts rows there."""

from django.db import migrations, models

TALLY = "conversations_conversationtally"
CONVERSATION = "conversations_conversation"
SHARDS = 64

#: Adds each (channel, status, archived) key's change to this backend's shard, keys in a fixed order so
#: that two transactions never wait for each other's rows in opposite orders.
_APPLY = f"""
    INSERT INTO {TALLY} AS t (shard, channel, status, archived, count)
    SELECT pg_backend_pid() % {SHARDS}, k.channel, k.status, k.archived, sum(k.delta)
    FROM (ROWS) AS k (channel, status, archived, delta)
    GROUP BY k.channel, k.status, k.archived
    HAVING sum(k.delta) <> 0
    ORDER BY k.channel, k.status, k.archived
    ON CONFLICT ON CONSTRAINT conversation_tally_key DO UPDATE SET count = t.count + EXCLUDED.count;
"""
_ROWS = "SELECT channel, status, archived_at IS NOT NULL, {delta} FROM {table}"

CREATE = f"""
CREATE FUNCTION conversation_tally_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_APPLY.replace("ROWS", _ROWS.format(delta=1, table="inserted"))}
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_tally_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_APPLY.replace("ROWS", _ROWS.format(delta=-1, table="before") + " UNION ALL " + _ROWS.format(delta=1, table="after"))}
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_tally_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_APPLY.replace("ROWS", _ROWS.format(delta=-1, table="deleted"))}
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_tally_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {TALLY};
    RETURN NULL;
END
$$;

-- Once per statement, over the rows it changed: a bulk load of 100,000 conversations is one upsert per
-- key, not 100,000 updates of one counter row (which would grow a chain of row versions in the loading
-- transaction and slow down quadratically).
CREATE TRIGGER conversation_tally_insert AFTER INSERT ON {CONVERSATION}
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION conversation_tally_inserted();
CREATE TRIGGER conversation_tally_update AFTER UPDATE ON {CONVERSATION}
    REFERENCING OLD TABLE AS before NEW TABLE AS after FOR EACH STATEMENT EXECUTE FUNCTION conversation_tally_updated();
CREATE TRIGGER conversation_tally_delete AFTER DELETE ON {CONVERSATION}
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION conversation_tally_deleted();
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
DROP TRIGGER IF EXISTS conversation_tally_delete ON {CONVERSATION};
DROP TRIGGER IF EXISTS conversation_tally_update ON {CONVERSATION};
DROP TRIGGER IF EXISTS conversation_tally_insert ON {CONVERSATION};
DROP FUNCTION IF EXISTS conversation_tally_reset();
DROP FUNCTION IF EXISTS conversation_tally_deleted();
DROP FUNCTION IF EXISTS conversation_tally_updated();
DROP FUNCTION IF EXISTS conversation_tally_inserted();
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
