"""Orphans and the sends they wait for meet under one lock per provider id, so a send can look for them in
the statement that records its provider id.

A status callback that finds no message for its provider id stores the event as an orphan, and the
send that later records that id applies it. One of the two must see the other whatever their timing.
The callback looks for the message again after its orphan has committed. The send used to look for
orphans in a statement of its own after its outcome had committed; it now looks in the outcome's own
statement (messaging.services, ``webhook_orphans_waiting`` in its RETURNING), before that commits, so
the two meet under a transaction-scoped advisory lock on (provider, provider message id):

- this trigger takes it for every event written as an orphan, held until the orphan commits;
- ``webhook_orphans_waiting()`` takes it, then reads with a snapshot of its own (a VOLATILE PL/pgSQL
  function's statement takes a new one in READ COMMITTED), held until the send's outcome commits.

If the callback takes the lock first, the send waits for the orphan's commit and then sees it. If the
send takes it first, the orphan waits for the outcome's commit, and the callback's look after its own
commit sees the message. A batch of the outbox's still looks in a statement after its commit.

On other databases (SQLite, development) nothing is made: the send looks after its commit there."""

from django.db import migrations

#: The lock's first key: "orph" in ASCII; the second is a hash of the provider and its message id.
CREATE = """
CREATE FUNCTION webhook_orphan_lock(p_provider varchar, p_provider_message_id varchar)
RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(1869770856, hashtext(p_provider || ' ' || p_provider_message_id));
$$;

CREATE FUNCTION webhook_orphans_waiting(p_provider varchar, p_provider_message_id varchar)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM webhook_orphan_lock(p_provider, p_provider_message_id);
    RETURN EXISTS (
        SELECT FROM webhooks_webhookevent
        WHERE outcome = 'orphan' AND kind = 'status'
            AND provider = p_provider AND provider_message_id = p_provider_message_id
    );
END
$$;

CREATE FUNCTION webhook_event_orphan_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_orphan_lock(NEW.provider, NEW.provider_message_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER webhook_event_orphan_lock
BEFORE INSERT OR UPDATE OF outcome ON webhooks_webhookevent
FOR EACH ROW WHEN (NEW.outcome = 'orphan' AND NEW.kind = 'status')
EXECUTE FUNCTION webhook_event_orphan_lock();
"""

DROP = """
DROP TRIGGER IF EXISTS webhook_event_orphan_lock ON webhooks_webhookevent;
DROP FUNCTION IF EXISTS webhook_event_orphan_lock();
DROP FUNCTION IF EXISTS webhook_orphans_waiting(varchar, varchar);
DROP FUNCTION IF EXISTS webhook_orphan_lock(varchar, varchar);
"""


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0005_claiming_message_function"),
    ]

    operations = [
        migrations.RunPython(create_functions, drop_functions, elidable=False),
    ]
