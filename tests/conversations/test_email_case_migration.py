"""conversations.0003 merges e-mail conversations that differ only by case, counters recomputed."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conversations", "0002_channel_registry"), ("messaging", "0004_message_lease")]
AFTER = [("conversations", "0003_email_threads_case_insensitive")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_apps():
    apps = migrate(BEFORE)
    yield apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_case_variants_merge_into_the_oldest_with_counters_recomputed(old_apps):
    Conversation = old_apps.get_model("conversations", "Conversation")
    Message = old_apps.get_model("messaging", "Message")
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    first = Conversation.objects.create(
        channel="email",
        participant_a="Jane@example.com",
        participant_b="shop@example.com",
        message_count=1,
        unread_count=1,
        last_message_at=t1,
        last_message_preview="first",
    )
    second = Conversation.objects.create(
        channel="email",
        participant_a="jane@example.com",
        participant_b="shop@example.com",
        status="closed",
        message_count=2,
        unread_count=2,
        last_message_at=t2,
        last_message_preview="newest",
    )
    other = Conversation.objects.create(
        channel="email", participant_a="Bob@example.com", participant_b="shop@example.com"
    )
    common = {"channel": "email", "type": "email", "status": "received", "provider": "sendgrid", "direction": "inbound"}
    Message.objects.create(
        conversation=first,
        from_address="Jane@example.com",
        to_address="shop@example.com",
        timestamp=t1,
        provider_message_id="m1",
        **common,
    )
    for n in (2, 3):
        Message.objects.create(
            conversation=second,
            from_address="jane@example.com",
            to_address="shop@example.com",
            timestamp=t2,
            provider_message_id=f"m{n}",
            **common,
        )

    apps = migrate(AFTER)

    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("messaging", "Message")
    merged = Conversation.objects.get(pk=first.pk)
    assert not Conversation.objects.filter(pk=second.pk).exists()
    assert (merged.participant_a, merged.participant_b) == ("jane@example.com", "shop@example.com")
    assert (merged.message_count, merged.unread_count) == (3, 3)
    assert merged.last_message_at == t2
    assert merged.last_message_preview == "newest"
    assert merged.status == "open"
    assert merged.last_message_direction == "inbound"
    assert Message.objects.filter(conversation_id=merged.pk).count() == 3
    assert set(Message.objects.values_list("from_address", flat=True)) == {"Jane@example.com", "jane@example.com"}
    assert Conversation.objects.get(pk=other.pk).participant_a == "bob@example.com"
