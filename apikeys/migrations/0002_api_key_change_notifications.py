"""Notifies the channel ``api_keys_changed`` whenever a key is revoked or removed (PostgreSQL), so every
connection forgets the active keys it remembers (apikeys/cache.py). Once per statement: a revocation
is one notification however many keys it revokes. ``last_used_at``, written once a minute per key in
use, notifies nothing. On other databases (SQLite, development) nothing is remembered and nothing is
made here."""

from django.db import migrations

TABLE = "apikeys_apikey"

CREATE = f"""
CREATE FUNCTION api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_keys_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_key_changed_update AFTER UPDATE OF key_hash, revoked_at ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION api_key_changed();
CREATE TRIGGER api_key_changed_delete AFTER DELETE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION api_key_changed();
CREATE TRIGGER api_key_changed_truncate AFTER TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION api_key_changed();
"""

DROP = f"""
DROP TRIGGER api_key_changed_truncate ON {TABLE};
DROP TRIGGER api_key_changed_delete ON {TABLE};
DROP TRIGGER api_key_changed_update ON {TABLE};
DROP FUNCTION api_key_changed();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("apikeys", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers, elidable=False)]
