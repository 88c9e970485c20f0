"""gunicorn started from the project's root reads gunicorn.conf.py (config/gunicorn.py): its threaded
processes share a burst of kept-alive connections instead of one process taking most of them
(core/gunicorn_worker.py), and a process holding connections still takes a new one at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pid_of(connection: socket.socket) -> int:
    """Sends one request on a kept-alive connection; the answer is the serving process's id."""
    connection.sendall(REQUEST)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1]:
        chunk = connection.recv(4096)
        if not chunk:
            raise AssertionError(f"the server closed the connection: {answer!r}")
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"connection: close" not in head.lower(), head
    return int(body)


@pytest.fixture
def serve(tmp_path):
    """Starts gunicorn from the project's root, as `make bench` and bin/start.sh's layout do
    (``--worker-class gthread`` on the command line, no ``--config``)."""
    started: list[subprocess.Popen] = []

    def start(*, workers: int, threads: int) -> int:
        port = _free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "tests.core.gunicorn_pid_app:application"),
                *("--bind", f"127.0.0.1:{port}", "--no-control-socket", "--log-level", "info"),
                *("--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads)),
                "--keep-alive",
                "30",
            ],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        started.append(process)
        deadline = time.monotonic() + 30
        while log.read_text().count("Booting worker") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # every process past its start-up, polling the socket
        return port

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _connect(port: int, count: int) -> list[socket.socket]:
    connections = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    return connections


def test_a_burst_of_connections_is_shared_by_the_processes(serve):
    port = serve(workers=3, threads=8)
    connections = _connect(port, 12)
    try:
        per_process = Counter(_pid_of(connection) for connection in connections)
        # Kept alive, each connection stays with its process: ask again on every one.
        assert Counter(_pid_of(connection) for connection in connections) == per_process
    finally:
        for connection in connections:
            connection.close()
    assert len(per_process) == 3, per_process
    # An even share is 4 each; without the balanced accept one process took 6 to 9 of them in every run here.
    assert max(per_process.values()) <= 5, per_process


def test_a_process_holding_connections_takes_a_new_one_at_once(serve):
    port = serve(workers=1, threads=8)
    held = _connect(port, 4)
    try:
        for connection in held:
            _pid_of(connection)
        time.sleep(0.1)  # idle now: nothing but the new connection can wake the process
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as new:
            _pid_of(new)
        # The process paused accepting for 3 x 5 ms after its fourth accept; it must not wait for
        # its poll's 1 s timeout to listen again.
        assert time.monotonic() - started < 0.5
    finally:
        for connection in held:
            connection.close()
