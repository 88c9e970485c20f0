"""A send looks for orphans in the statement that records its provider id; a callback's look again
waits for that statement's commit.

A status callback that finds no message for its provider id stores the event as an orphan, and the
send that later records that id applies it. One of the two must see the other whatever their timing.
Both used to commit their write and only then look for the other. An inline send now looks in its
outcome's own statement (messaging.services, ``webhook_orphans_waiting`` in its RETURNING), before
that commits, so the two meet at a transaction-scoped advisory lock on (provider, provider message
id) (``webhook_assignment_lock_key``):

- ``webhook_orphans_waiting()`` tries the lock without waiting. Taken, it reads with a snapshot of its
  own (a VOLATILE PL/pgSQL function's statement takes a new one in READ COMMITTED) and keeps the lock
  until the send's outcome commits. Not taken (a callback is at the step below for an id with the
  same hash, or another send is), it answers NULL and the send looks after its commit, as before.
- A callback whose orphan has committed calls ``webhook_wait_for_assignments()`` before it looks for
  the message again: it takes and at once lets go of each id's lock (at session level, one at a time,
  so a batch of thousands holds one lock at most, and released on an error too), which waits for a
  send that holds it to commit.

So either the callback's orphan committed before the send tried the lock, and the send's read sees
it, or the send holds the lock and the callback's look again comes after the send's commit. A send
never waits for the lock; a callback waits for the commits of the sends holding its ids' locks, each
held from the outcome's statement to its commit (webhooks.services bounds the wait at 30 s). Both
sides must run in autocommit, as the service runs them: a look made before its own side's commit
proves nothing.

On other databases (SQLite, development) nothing is made: the send looks after its commit there."""

from django.db import migrations

#: The lock's first key: "orph" in ASCII; the second is a hash of the provider and its message id.
CREATE = """
CREATE FUNCTION webhook_assignment_lock_key(p_provider varchar, p_provider_message_id varchar)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtext(p_provider || ' ' || p_provider_message_id);
$$;

CREATE FUNCTION webhook_orphans_waiting(p_provider varchar, p_provider_message_id varchar)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(1869770856, webhook_assignment_lock_key(p_provider, p_provider_message_id)) THEN
        RETURN NULL;
    END IF;
    RETURN EXISTS (
        SELECT FROM webhooks_webhookevent
        WHERE outcome = 'orphan' AND kind = 'status'
            AND provider = p_provider AND provider_message_id = p_provider_message_id
    );
END
$$;

CREATE FUNCTION webhook_wait_for_assignments(p_providers varchar[], p_provider_message_ids varchar[])
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    key integer;
BEGIN
    FOR key IN
        SELECT DISTINCT webhook_assignment_lock_key(provider, provider_message_id)
        FROM unnest(p_providers, p_provider_message_ids) AS pairs(provider, provider_message_id)
        ORDER BY 1
    LOOP
        BEGIN
            PERFORM pg_advisory_lock(1869770856, key);
            PERFORM pg_advisory_unlock(1869770856, key);
        EXCEPTION WHEN query_canceled OR others THEN
            -- A session lock outlives the statement: never keep one past a timeout or a cancel.
            PERFORM pg_advisory_unlock(1869770856, key);
            RAISE;
        END;
    END LOOP;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS webhook_wait_for_assignments(varchar[], varchar[]);
DROP FUNCTION IF EXISTS webhook_orphans_waiting(varchar, varchar);
DROP FUNCTION IF EXISTS webhook_assignment_lock_key(varchar, varchar);
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
