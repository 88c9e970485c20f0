"""Outbox workers as separate operating-system processes, on a committed database."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.utils import timezone

from messaging.models import Message
from tests.factories import OutboxMessageFactory
from tests.fault_proxy import CUT, PASS, FaultProxy

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
# The mock providers' shared memory for these tests; other suites use other Redis databases.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def mock_memory(monkeypatch):
    """The mocks' memory in Redis under a prefix of this test's own, so concurrent runs on one Redis
    never see (or flush) each other's keys."""
    prefix = f"test-{uuid.uuid4().hex}"
    monkeypatch.setenv("TEST_MOCK_PROVIDER_REDIS_PREFIX", prefix)
    yield RedisCache(REDIS_URL, {"KEY_PREFIX": prefix})
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_stray_workers():
    """A failing test must not leave a worker running (it would hold the test database open)."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def environment(**env):
    """The environment of a process of its own on the test database, sharing the mocks' memory."""
    db = connection.settings_dict
    url = f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url,
        "TEST_MOCK_PROVIDER_REDIS_URL": REDIS_URL,
        "RETRY_BASE_DELAY_SECONDS": "0.2",
        **env,
    }


def worker(*args, **env):
    """``manage.py run_worker`` in a process of its own, on the test database."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", *args],
        cwd=ROOT,
        env=environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _started.append(process)
    return process


def finish(process, timeout=60):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_until(condition, timeout=90, *, worker=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            said = "".join(worker.stderr[-40:]) if worker is not None else ""
            raise AssertionError("condition not reached" + (f"; the worker's last lines:\n{said}" if said else ""))
        time.sleep(0.05)


def test_three_racing_workers_send_each_message_exactly_once(mock_memory):
    # As after 60 sends that failed once inline with a 503: pending, one attempt made.
    OutboxMessageFactory.create_batch(
        60, attempts=1, metadata={"force_error": {"code": 503, "message": None, "times": 1}}
    )

    # 100 ms a send, so the work lasts long enough for all three to be racing for it.
    processes = [worker("--once", "--concurrency", "4", TEST_MOCK_PROVIDER_LATENCY_MS="100-100") for _ in range(3)]
    results = [finish(process) for process in processes]

    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    assert set(Message.objects.values_list("status", "attempts")) == {("sent", 2)}
    assert Message.objects.values("provider_message_id").distinct().count() == 60
    # The provider saw each message once: no idempotent replays were needed.
    assert mock_memory.get("mock-provider:twilio:sends") == 60
    assert mock_memory.get("mock-provider:twilio:replays") is None
    # Every attempt is accounted for exactly once across the three processes.
    attempted = [int(out.split("done: ")[1].split(" attempted")[0]) for _, out, _ in results]
    assert sum(attempted) == 60
    # How the work split between the three depends on the machine's scheduling; that concurrent claims
    # skip each other's rows instead of waiting is proven deterministically in test_outbox_locking.py.


#: run_worker with the mock provider held at the provider boundary until the file argv[1] exists, so a
#: test knows a delivery is in flight (no guess at how long a send takes on a loaded machine).
_GATED_WORKER = """
import pathlib, sys, time
import django
django.setup()
from django.core.management import call_command
from providers.twilio import TwilioProvider as MockTwilioProvider
gate = pathlib.Path(sys.argv[1])
real_send = MockTwilioProvider.send
def held_send(self, message):
    sys.stderr.write("in flight\\n")  # one write: two threads cannot interleave within the line
    sys.stderr.flush()
    while not gate.exists():
        time.sleep(0.01)
    return real_send(self, message)
MockTwilioProvider.send = held_send
call_command("run_worker", *sys.argv[2:])
"""


class GatedWorker:
    """A worker process whose stderr is read as it comes (to wait for a line) and whose sends wait."""

    def __init__(self, gate: Path, *args: str, **env: str) -> None:
        self.gate = gate
        self.process = subprocess.Popen(
            [sys.executable, "-c", _GATED_WORKER, str(gate), *args],
            cwd=ROOT,
            env=environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _started.append(self.process)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.stderr))

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return self.process.returncode, out, "".join(self.stderr)


def test_sigterm_finishes_deliveries_in_flight_then_exits_cleanly(mock_memory, tmp_path):
    OutboxMessageFactory.create_batch(6)
    worker_process = GatedWorker(tmp_path / "go", "--concurrency", "2")
    wait_until(lambda: sum(line.count("in flight") for line in list(worker_process.stderr)) == 2)

    worker_process.process.send_signal(signal.SIGTERM)
    wait_until(lambda: worker_process.said("SIGTERM: finishing deliveries in flight"))
    (tmp_path / "go").touch()  # the two sends in flight now complete
    code, out, err = worker_process.finish()

    assert code == 0, err
    assert "Outbox worker done: 2 attempted (2 sent)." in out
    assert Message.objects.filter(status="sent").count() == 2
    # The rest were never claimed: still due, for the next worker.
    assert Message.objects.filter(status="pending", attempts=0, leased_until=None).count() == 4


def test_a_killed_workers_messages_are_taken_over_after_the_lease(mock_memory, tmp_path):
    message = OutboxMessageFactory()
    settings = {"PROVIDER_TIMEOUT_SECONDS": "2", "OUTBOX_LEASE_SECONDS": "3"}
    doomed = GatedWorker(tmp_path / "never", "--concurrency", "1", **settings)
    wait_until(lambda: doomed.said("in flight"))

    doomed.process.kill()  # SIGKILL mid-send: nothing recorded, the lease is all that is left
    doomed.finish()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 1)

    code, _, err = finish(worker("--once", "--due-within", "5", TEST_MOCK_PROVIDER_LATENCY_MS="0", **settings))

    assert code == 0, err
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)


def test_a_send_the_provider_accepted_from_a_process_that_then_died_is_not_sent_again(mock_memory):
    message = OutboxMessageFactory(attempts=1, leased_until=timezone.now())
    crashing_sender = f"""
import os, django
django.setup()
from messaging.models import Message
from messaging.services import _outbound_for
from messaging.services import provider_for_channel
provider_for_channel("sms").send(_outbound_for(Message.objects.get(pk={message.pk})))
os._exit(0)  # dies before recording anything
"""
    subprocess.run([sys.executable, "-c", crashing_sender], cwd=ROOT, env=environment(), check=True, timeout=60)
    assert mock_memory.get("mock-provider:twilio:sends") == 1

    code, _, err = finish(worker("--once", "--due-within", "0"))

    assert code == 0, err
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    # The worker's attempt got the original send back: the provider sent the message once.
    assert mock_memory.get("mock-provider:twilio:sends") == 1
    assert mock_memory.get("mock-provider:twilio:replays") == 1


def test_a_long_running_worker_survives_a_database_outage(mock_memory, tmp_path):
    db = connection.settings_dict
    proxy = FaultProxy(target=(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))).start()
    through_proxy = f"postgresql://{db['USER']}:{db['PASSWORD']}@127.0.0.1:{proxy.port}/{db['NAME']}"
    (tmp_path / "go").touch()  # sends are not held
    try:
        running = GatedWorker(tmp_path / "go", "--poll-interval", "0.1", DATABASE_URL=through_proxy, LOG_LEVEL="DEBUG")
        before = OutboxMessageFactory()
        # Its delivery is over (the worker logs it at DEBUG after recording the outcome).
        wait_until(lambda: running.said(f"Message {before.pk} attempt 1: sent"), timeout=60, worker=running)

        proxy.set_mode(CUT)  # the database goes away under the running worker
        wait_until(lambda: running.said("Outbox claim failed"), timeout=60, worker=running)
        proxy.set_mode(PASS)
        after = OutboxMessageFactory()
        wait_until(lambda: Message.objects.get(pk=after.pk).status == "sent", timeout=60)

        running.process.send_signal(signal.SIGTERM)
        code, out, err = running.finish()
    finally:
        proxy.close()
    assert code == 0, err
    assert "2 attempted (2 sent)" in out
