"""Back-office indexes. Full-text search over message bodies (the back office's and the API's ``q``): a GIN index on
PostgreSQL matching conversations.search's expression exactly. SQLite (development) searches without one.
And messages by their own time, newest first, for the lists and the dashboard's chart."""

from django.db import migrations, models

INDEX = "message_body_search_idx"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_message "
            "USING gin (to_tsvector('english'::regconfig, COALESCE(body, '')))"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ("messaging", "0005_channel_registry_and_read"),
    ]

    operations = [
        migrations.RunPython(create, drop),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["-timestamp", "-id"], name="message_timestamp_idx"),
        ),
    ]
