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
