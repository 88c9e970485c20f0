"""core.inserts: the INSERT parts of an instance are what Django's INSERT compiler makes of it."""

import uuid

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.db.models.sql import InsertQuery
from django.utils import timezone

from conversations.models import Conversation
from core import inserts
from core.inserts import insert_parts
from messaging.models import Direction, Message, MessageStatus
from webhooks.models import WebhookEvent, WebhookOutcome

pytestmark = pytest.mark.django_db


def _compiled(instance, exclude=frozenset()):
    model = type(instance)
    fields = [f for f in model._meta.local_concrete_fields if not f.primary_key and f.column not in exclude]
    query = InsertQuery(model)
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(connection=connection)
    row = [compiler.prepare_value(f, compiler.pre_save_val(f, instance)) for f in fields]
    (placeholders,), (params,) = compiler.assemble_as_sql(fields, [row])
    return [connection.ops.quote_name(f.column) for f in fields], list(placeholders), list(params)


def _comparable(params):
    # psycopg's Jsonb wrapper has no equality of its own: compare what it wraps.
    return [(type(p).__name__, getattr(p, "obj", p)) for p in params]


def _instances():
    now = timezone.now()
    yield (
        Message(
            channel="sms",
            direction=Direction.INBOUND,
            type="mms",
            from_address="+12025550100",
            to_address="+12025550101",
            body="hello",
            attachments=["https://example.com/a.png"],
            status=MessageStatus.RECEIVED,
            provider="p",
            provider_message_id="id-1",
            timestamp=now,
            metadata={"k": [1, 2]},
        ),
        frozenset({"conversation_id"}),
    )
    yield (
        WebhookEvent(
            provider="p",
            kind="inbound",
            event_id="e-1",
            outcome=WebhookOutcome.PROCESSED,
            headers={"Content-Type": "application/json"},
            content_type="application/json",
            body="{}",
            body_exact=True,
            processed_at=now,
        ),
        frozenset({"message_id"}),
    )
    yield Conversation(channel="sms", participant_a="+1", participant_b="+2", last_message_at=now), frozenset()


@pytest.mark.parametrize(("instance", "exclude"), list(_instances()), ids=["message", "event", "conversation"])
def test_insert_parts_are_the_insert_compilers(instance, exclude, monkeypatch):
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)  # auto_now columns stamp the same time twice
    columns, placeholders, params = insert_parts(instance, exclude=exclude)
    expected_columns, expected_placeholders, expected_params = _compiled(instance, exclude)

    assert columns == expected_columns
    assert placeholders == expected_placeholders
    assert _comparable(params) == _comparable(expected_params)


def test_insert_parts_do_not_build_a_compiler_for_plain_values(monkeypatch):
    instance, exclude = next(_instances())
    monkeypatch.setattr(inserts, "InsertQuery", None)  # any use of the compiler path fails

    columns, placeholders, params = insert_parts(instance, exclude=exclude)

    assert placeholders == ["%s"] * len(columns) == ["%s"] * len(params)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the date-time shortcut is PostgreSQL's (USE_TZ)")
def test_insert_parts_stamp_auto_now_and_adapt_json_without_the_fields_preparation(monkeypatch):
    from django.db.models import DateTimeField, JSONField

    def refuse(*args, **kwargs):
        raise AssertionError("the field's own preparation ran")

    monkeypatch.setattr(DateTimeField, "pre_save", refuse)
    monkeypatch.setattr(JSONField, "get_db_prep_save", refuse)
    message, exclude = next(_instances())

    columns, _, params = insert_parts(message, exclude=exclude)
    by_column = dict(zip(columns, params, strict=True))

    assert message.created_at is not None
    assert message.created_at.tzinfo is not None
    assert message.created_at == message.updated_at  # one instant per row
    assert by_column[connection.ops.quote_name("created_at")] is message.created_at
    assert by_column[connection.ops.quote_name("updated_at")] is message.updated_at
    assert _comparable([by_column[connection.ops.quote_name("metadata")]]) == [("Jsonb", {"k": [1, 2]})]
    assert _comparable([by_column[connection.ops.quote_name("attachments")]]) == [
        ("Jsonb", ["https://example.com/a.png"])
    ]
    assert by_column[connection.ops.quote_name("last_error")] is None  # a null JSON field is SQL NULL


def test_an_expression_value_is_compiled():
    conversation = Conversation(channel="sms", participant_a="+1", participant_b="+2", last_message_at=Now())

    columns, placeholders, params = insert_parts(conversation)

    position = columns.index(connection.ops.quote_name("last_message_at"))
    assert placeholders[position] != "%s"
    assert "%s" in placeholders[:position] + placeholders[position + 1 :]
    assert len(params) == len(columns) - 1


@pytest.mark.parametrize("model", [Message, Conversation, WebhookEvent])
def test_unsaved_is_the_models_own_constructor_for_plain_values(model):
    from django.db.models.signals import post_init, pre_init

    assert not pre_init.has_listeners(model), "unsaved() skips them"
    assert not post_init.has_listeners(model), "unsaved() skips them"
    values = {"channel": "email"} if model is not WebhookEvent else {"provider": "p", "kind": "inbound"}

    made, expected = inserts.unsaved(model, **values), model(**values)

    def comparable(instance):  # a random default (the provider token) compares by its type
        return {k: type(v) if isinstance(v, uuid.UUID) else v for k, v in vars(instance).items() if k != "_state"}

    assert made._state.adding
    assert made._state.db is None
    assert comparable(made) == comparable(expected)
    assert list(vars(made)) == list(vars(expected))
    with pytest.raises(TypeError, match="conversation"):
        inserts.unsaved(Message, conversation=None)


def test_unsaved_defaults_are_fresh_per_instance():
    first, second = inserts.unsaved(Message), inserts.unsaved(Message)
    first.attachments.append("x")
    assert second.attachments == []
    assert first._state is not second._state
    assert first.provider_token != second.provider_token
