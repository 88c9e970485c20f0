"""gunicorn started as `make bench` starts it, for the tests of its processes' settings
(test_gunicorn_worker.py, test_admission.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import gunicorn.util
import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _post_worker_init_undone(monkeypatch):
    """Each test starts and ends with what ``post_worker_init`` changes process-wide as it was, whether
    or not the test runs it in pytest's process: gunicorn's own ``util.http_date`` (``settle`` wraps
    it: core/gunicorn_worker.py) and Django's per-request receivers (it disconnects two:
    core/startup.py)."""
    own = getattr(gunicorn.util.http_date, "__wrapped__", gunicorn.util.http_date)
    monkeypatch.setattr(gunicorn.util, "http_date", own)
    yield
    from django.core.handlers.base import reset_urlconf
    from django.core.signals import request_finished, request_started
    from django.db import reset_queries

    request_started.connect(reset_queries)  # connecting a connected receiver again does nothing
    request_finished.connect(reset_urlconf)


@pytest.fixture
def gunicorn_server(tmp_path):
    """Starts gunicorn from the project's root (``--worker-class gthread`` on the command line, no
    ``--config``: gunicorn reads gunicorn.conf.py) serving ``app``, with only PATH and ``env`` in its
    environment; returns its port and the path of its log once every process has booted and is past
    its start-up. Every server started is stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(
        app: str, *, workers: int, threads: int, env: Mapping[str, str] | None = None, args: Iterable[str] = ()
    ) -> tuple[int, Path]:
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", app),
                *("--bind", f"127.0.0.1:{port}", "--no-control-socket", "--log-level", "info"),
                *("--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads)),
                *args,
            ],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        started.append(process)
        deadline = time.monotonic() + 30
        while log.read_text().count("Booting worker") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # every process past post_worker_init, polling the socket
        return port, log

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
