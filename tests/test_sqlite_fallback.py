"""`make run` without DATABASE_URL uses SQLite: the schema and the outbox must work there too."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manage(*args, database):
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "DATABASE_URL": f"sqlite:///{database}",
        "MOCK_PROVIDER_LATENCY_MS": "0",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_every_migration_applies_on_sqlite_and_the_worker_runs(tmp_path):
    database = tmp_path / "db.sqlite3"

    migrated = manage("migrate", "--no-input", database=database)
    assert migrated.returncode == 0, migrated.stderr

    worker = manage("run_worker", "--once", "--due-within", "0", database=database)
    assert worker.returncode == 0, worker.stderr
    assert "Outbox worker done: 0 attempted." in worker.stdout


def shell_on_new_database(tmp_path, script: str) -> str:
    """Runs ``script`` in ``manage.py shell`` on a freshly migrated SQLite database; its output."""
    database = tmp_path / "db.sqlite3"
    assert manage("migrate", "--no-input", database=database).returncode == 0
    result = manage("shell", "--verbosity", "0", "-c", script, database=database)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_inbox_total_is_counted_on_sqlite(tmp_path):
    script = (
        "from conversations.models import Conversation\n"
        "from conversations.selectors import InboxFilters, conversation_list_page, conversation_list_total\n"
        "from core.pagination import PageRequest\n"
        "for n in range(3):\n"
        "    Conversation.objects.create(channel='sms', participant_a=f'+1201555000{n}',"
        " participant_b='+18045551234')\n"
        "items, total = conversation_list_page(filters=InboxFilters(), page=PageRequest(page=1, limit=2))\n"
        "print(conversation_list_total(), total, len(items))\n"
    )

    assert shell_on_new_database(tmp_path, script).split() == ["None", "3", "2"]


def test_a_thread_page_is_read_on_sqlite(tmp_path):
    """The thread page's statement (core.prepared.prepared_models) runs on SQLite's own cursor, with
    the ORM's converters (JSON, date-times, UUIDs)."""
    script = (
        "from django.utils import timezone\n"
        "from core.pagination import PageRequest\n"
        "from messaging.selectors import message_thread_page\n"
        "from messaging.services import message_receive\n"
        "from providers.base import InboundMessage\n"
        "for n in range(3):\n"
        "    message = message_receive(inbound=InboundMessage(channel='sms', type='mms', provider='twilio',"
        " provider_message_id=f'SM{n}', from_address='+12025550100', to_address='+18045551234', body=f'hi {n}',"
        " timestamp=timezone.now(), attachments=['https://example.com/a.png']))\n"
        "messages, total = message_thread_page(conversation_id=message.conversation_id, order='desc',"
        " page=PageRequest(page=1, limit=2))\n"
        "print(total, [m.body for m in messages], messages[0].attachments, messages[0].timestamp.tzinfo is not None,"
        " type(messages[0].provider_token).__name__)\n"
    )

    assert shell_on_new_database(tmp_path, script).strip() == (
        "3 ['hi 2', 'hi 1'] ['https://example.com/a.png'] True UUID"
    )
