"""Database chores of `make bench` that need Django's models: seeding in bulk, reading the mock's memory.

    DJANGO_SETTINGS_MODULE=config.settings.production python -m bench.ops seed-inbox 100000 10
    DJANGO_SETTINGS_MODULE=config.settings.production python -m bench.ops seed-outbox 3000 --due-in 4
    DJANGO_SETTINGS_MODULE=config.settings.production python -m bench.ops mock-counts
    DATABASE_URL=... python -m bench.ops --baseline seed-inbox 100000 10

Seeding is one ``INSERT ... SELECT ... FROM generate_series`` per table, so a million messages take
seconds. The column list is read from the models, not written out here: a column the seed does not
name gets the field's default (``now()`` for auto timestamps, a fresh ``gen_random_uuid()`` for a
UUID default, NULL where allowed), and a new required column without a default stops the seed with
its name instead of silently producing rows the service would not.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

# The business number every seeded thread is with, and the numbers the customers get (never the ones
# the load scenarios use, which start with +1201 2..., +1202 and +1203).
BUSINESS_NUMBER = "+18045551234"
CUSTOMER_PREFIX = "+1205"


def _setup(baseline: bool):
    if baseline:
        from bench import baseline as project

        return project.Conversation, project.Message, "baseline"  # its own project: any provider label
    import django

    # Seeding a million rows takes longer than the per-statement bounds the service runs with
    # (DB_STATEMENT_TIMEOUT, DB_QUERY_TIMEOUT): off for this tool, as for migrate in bin/start.sh.
    os.environ.setdefault("DB_STATEMENT_TIMEOUT", "0")
    os.environ.setdefault("DB_QUERY_TIMEOUT", "0")
    django.setup()
    from conversations.models import Conversation
    from messaging.models import Message
    from messaging.services import provider_for_channel

    return Conversation, Message, provider_for_channel("sms").name


def insert_series(model, *, rows: int, columns: dict[str, str], params: dict | None = None) -> int:
    """INSERT ``rows`` rows into ``model``'s table, one per ``g`` in generate_series(0, rows - 1).

    ``columns`` maps a column name to an SQL expression (it may use ``g`` and ``%(name)s`` params);
    names the model does not have are ignored, so one mapping serves the service and the baseline."""
    from django.db import connection
    from django.db.models import UUIDField

    names, expressions, values = [], [], dict(params or {})
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        names.append(connection.ops.quote_name(field.column))
        if field.column in columns:
            expressions.append(columns[field.column])
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            expressions.append("now()")
        elif isinstance(field, UUIDField) and field.default is uuid.uuid4:
            expressions.append("gen_random_uuid()")
        elif field.has_default():
            key = f"default_{field.column}"
            values[key] = field.get_db_prep_save(field.get_default(), connection)
            expressions.append(f"%({key})s")
        elif field.null:
            expressions.append("NULL")
        else:
            raise SystemExit(f"bench.ops: {model._meta.db_table}.{field.column} has no default; name it in the seed")
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(names)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(0, {int(rows) - 1}) AS g"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.rowcount


def _analyze(*models) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def seed_inbox(*, baseline: bool, conversations: int, per_conversation: int) -> dict:
    """``conversations`` threads of ``per_conversation`` messages each, alternating inbound and outbound,
    the newest thread first in id order, as an inbox that has been in use for a while."""
    from django.db import transaction

    conversation_model, message_model, provider = _setup(baseline)
    started = time.monotonic()
    with transaction.atomic():
        first = (conversation_model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        insert_series(
            conversation_model,
            rows=conversations,
            columns={
                "channel": "'sms'",
                "participant_a": f"'{CUSTOMER_PREFIX}' || lpad(g::text, 7, '0')",
                "participant_b": f"'{BUSINESS_NUMBER}'",
                "status": "'open'",
                "last_message_at": "now() - g * interval '1 minute'",
                "last_message_preview": "'seeded message ' || g",
                "message_count": str(per_conversation),
                "unread_count": str((per_conversation + 1) // 2),
            },
        )
        last = conversation_model.objects.order_by("-pk").values_list("pk", flat=True).first()
        if last - first + 1 != conversations:
            raise SystemExit(f"bench.ops: conversation ids {first}..{last} are not contiguous")
        # Message g belongs to conversation first + g / per_conversation; k = g % per is its place.
        k = f"mod(g, {per_conversation})"
        conversation_index = f"(g / {per_conversation})"
        customer = f"'{CUSTOMER_PREFIX}' || lpad({conversation_index}::text, 7, '0')"
        inbound = f"(mod({k}, 2) = 0)"
        insert_series(
            message_model,
            rows=conversations * per_conversation,
            params={"first": first, "provider": provider},
            columns={
                "conversation_id": f"%(first)s + {conversation_index}",
                "channel": "'sms'",
                "direction": f"CASE WHEN {inbound} THEN 'inbound' ELSE 'outbound' END",
                "type": "'sms'",
                "from_address": f"CASE WHEN {inbound} THEN {customer} ELSE '{BUSINESS_NUMBER}' END",
                "to_address": f"CASE WHEN {inbound} THEN '{BUSINESS_NUMBER}' ELSE {customer} END",
                "body": "'seeded message ' || g",
                "status": f"CASE WHEN {inbound} THEN 'received' ELSE 'sent' END",
                "provider": "%(provider)s",
                "provider_message_id": "'seed-' || g",
                "attempts": f"CASE WHEN {inbound} THEN 0 ELSE 1 END",
                "first_outcome": f"CASE WHEN {inbound} THEN '' ELSE 'sent' END",
                "timestamp": (
                    f"now() - {conversation_index} * interval '1 minute' - ({per_conversation - 1} - {k}) "
                    "* interval '1 second'"
                ),
            },
        )
    _analyze(conversation_model, message_model)
    return {
        "conversations": conversations,
        "messages": conversations * per_conversation,
        "first_conversation_id": first,
        "last_conversation_id": last,
        "seconds": round(time.monotonic() - started, 2),
    }


def seed_outbox(*, messages: int, due_in: float, conversations: int = 100) -> dict:
    """``messages`` pending outbound SMS, never attempted, all due ``due_in`` seconds from now, spread
    over ``conversations`` threads: what the outbox worker finds after a burst of queued sends."""
    from django.db import connection, transaction

    conversation_model, message_model, provider = _setup(baseline=False)
    started = time.monotonic()
    with transaction.atomic():
        first = (conversation_model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        insert_series(
            conversation_model,
            rows=conversations,
            columns={
                "channel": "'sms'",
                "participant_a": f"'{BUSINESS_NUMBER}'",
                "participant_b": "'+1809' || lpad(g::text, 7, '0')",
                "status": "'open'",
                "last_message_at": "now()",
                "message_count": str(messages // conversations),
            },
        )
        customer = f"'+1809' || lpad(mod(g, {conversations})::text, 7, '0')"
        insert_series(
            message_model,
            rows=messages,
            params={"first": first, "provider": provider, "due_in": due_in},
            columns={
                "conversation_id": f"%(first)s + mod(g, {conversations})",
                "channel": "'sms'",
                "direction": "'outbound'",
                "type": "'sms'",
                "from_address": f"'{BUSINESS_NUMBER}'",
                "to_address": customer,
                "body": "'queued message ' || g",
                "status": "'pending'",
                "provider": "%(provider)s",
                "next_attempt_at": "now() + %(due_in)s * interval '1 second'",
                "timestamp": "now()",
            },
        )
        # now() is the transaction's start, the instant the rows' next_attempt_at was computed from.
        with connection.cursor() as cursor:
            cursor.execute("SELECT extract(epoch FROM now())::float8 + %s", [due_in])
            (due_at,) = cursor.fetchone()
    _analyze(conversation_model, message_model)
    return {"messages": messages, "due_at_epoch": due_at, "seconds": round(time.monotonic() - started, 2)}


def mock_counts() -> dict:
    """Sends and idempotent replays the SMS mock provider remembers (its memory is Redis, shared by
    every process), or ``available: false`` if the configured provider keeps no such count."""
    _setup(baseline=False)
    from messaging.services import provider_for_channel

    provider = provider_for_channel("sms")
    counts = getattr(provider, "counts", None)
    if counts is None:
        return {"available": False}
    return {"available": True, **counts()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="store_true", help="act on the baseline project's database")
    commands = parser.add_subparsers(dest="command", required=True)
    inbox = commands.add_parser("seed-inbox")
    inbox.add_argument("conversations", type=int)
    inbox.add_argument("per_conversation", type=int)
    outbox = commands.add_parser("seed-outbox")
    outbox.add_argument("messages", type=int)
    outbox.add_argument("--due-in", type=float, default=0.0)
    commands.add_parser("mock-counts")
    args = parser.parse_args(argv)
    if args.command == "seed-inbox":
        result = seed_inbox(
            baseline=args.baseline, conversations=args.conversations, per_conversation=args.per_conversation
        )
    elif args.command == "seed-outbox":
        result = seed_outbox(messages=args.messages, due_in=args.due_in)
    else:
        result = mock_counts()
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    main(sys.argv[1:])
