"""The tally triggers (0004) return at once from a statement that moves no conversation between keys.

A statement-level trigger fires even when its statement changed no row, and the inbound webhook's one
statement upserts the conversation in every case: a duplicate delivery fires the INSERT and the UPDATE
triggers over empty transition tables, and a message to a conversation that exists fires the INSERT
trigger over none and the UPDATE trigger over one row whose key (channel, status, archived) stays the
same. Each then ran the tally's upsert over nothing. The functions now first check, without touching
the tally table, whether there is anything to count: any inserted or deleted row; for an update, an
``after`` row whose key is not matched by a ``before`` row (as multisets: an UPDATE's transition tables
hold the same number of rows, so they are equal exactly when every key's change sums to zero). This
took about 25 us of PostgreSQL's CPU off a duplicate delivery's statement and 10 off a new message's
(docs/PERFORMANCE.md, eighteenth round). The counts are those of 0004 in every case.
"""

import importlib

from django.db import migrations

tally = importlib.import_module("conversations.migrations.0004_conversation_tally")

_KEY = "channel, status, archived_at IS NOT NULL"


def _function(name: str, nothing_to_count: str, rows: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {nothing_to_count} THEN
        RETURN NULL;
    END IF;
{tally._APPLY.replace("ROWS", rows)}
    RETURN NULL;
END
$$;
"""


#: Each function's rows (its transition tables, with each row's +1 or -1) and what it checks first.
_FUNCTIONS = (
    (
        "conversation_tally_inserted",
        tally._ROWS.format(delta=1, table="inserted"),
        "NOT EXISTS (SELECT FROM inserted)",
    ),
    (
        "conversation_tally_updated",
        tally._ROWS.format(delta=-1, table="before") + " UNION ALL " + tally._ROWS.format(delta=1, table="after"),
        f"NOT EXISTS (SELECT {_KEY} FROM after EXCEPT ALL SELECT {_KEY} FROM before)",
    ),
    (
        "conversation_tally_deleted",
        tally._ROWS.format(delta=-1, table="deleted"),
        "NOT EXISTS (SELECT FROM deleted)",
    ),
)

SKIPPING = "".join(_function(name, nothing_to_count, rows) for name, rows, nothing_to_count in _FUNCTIONS)

#: Functions that count every statement, as 0004's did (the reverse migration).
ALWAYS = "".join(_function(name, "false", rows) for name, rows, _ in _FUNCTIONS)


def skip_empty(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SKIPPING, params=None)  # no placeholders: "%" is modulo


def count_always(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ALWAYS, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_conversation_tally"),
    ]

    operations = [
        migrations.RunPython(skip_empty, count_always, elidable=False),
    ]
