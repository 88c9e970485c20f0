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


def test_the_inbox_total_is_counted_on_sqlite(tmp_path):
    database = tmp_path / "db.sqlite3"
    assert manage("migrate", "--no-input", database=database).returncode == 0
    script = (
        "from conversations.models import Conversation\n"
        "from conversations.selectors import conversation_list_total\n"
        "from core.pagination import PageRequest, paginated_response\n"
        "from conversations.selectors import conversation_list\n"
        "from conversations.serializers import ConversationSerializer\n"
        "for n in range(3):\n"
        "    Conversation.objects.create(channel='sms', participant_a=f'+1201555000{n}',"
        " participant_b='+18045551234')\n"
        "page = paginated_response(conversation_list(), PageRequest(page=1, limit=2), ConversationSerializer,"
        " total=conversation_list_total())\n"
        "print(conversation_list_total(), page.data['meta']['total'], len(page.data['data']))\n"
    )

    result = manage("shell", "--verbosity", "0", "-c", script, database=database)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "3", "2"]
