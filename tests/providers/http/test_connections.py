"""How HTTP mode holds its provider connections: a kept-alive connection per calling thread, at most
PROVIDER_HTTP_MAX_CONNECTIONS calls in flight per provider, a call that finds no free slot refused as
never sent, and a thread's connection closed when the thread ends."""

from __future__ import annotations

import gc
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from providers import http
from providers.base import ProviderError


class _Peer(ThreadingHTTPServer):
    """A provider that answers every POST after ``delay`` seconds and notes what it saw: the connection
    (client port) of each request and of each calling thread, the most requests in flight at once, and
    the connections closed."""

    daemon_threads = True

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.lock = threading.Lock()
        self.ports: list[int] = []
        self.threads: dict[str, set[int]] = {}  # the calling thread's name (sent as "thread") -> its connections
        self.in_flight = 0
        self.most_in_flight = 0
        self.closed: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Peer

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
        with self.server.lock:
            self.server.ports.append(self.client_address[1])
            for thread in form.get("thread", []):
                self.server.threads.setdefault(thread, set()).add(self.client_address[1])
            self.server.in_flight += 1
            self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)
        time.sleep(self.server.delay)
        with self.server.lock:
            self.server.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.closed.add(self.client_address[1])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def peer():
    servers: list[_Peer] = []

    def start(delay: float = 0.0) -> _Peer:
        server = _Peer(delay)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _post(url: str) -> int:
    return http.http_post(provider="twilio", call=http.HttpCall(url=url, data={"Body": "hi"})).status_code


def _on_threads(count: int, work) -> list[object]:
    """Runs ``work()`` once on each of ``count`` threads started together; their results or errors."""
    results: list[object] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_each_thread_keeps_its_own_connection_alive(http_settings, peer):
    server = peer(delay=0.005)

    def five_calls() -> list[int]:
        thread = threading.current_thread().name
        return [
            http.http_post(provider="twilio", call=http.HttpCall(url=server.url, data={"thread": thread})).status_code
            for _ in range(5)
        ]

    assert _on_threads(8, five_calls) == [[200] * 5] * 8
    # 40 requests over 8 connections: every thread reused its own, none took another thread's.
    assert len(server.threads) == 8
    assert all(len(ports) == 1 for ports in server.threads.values())
    assert len(set().union(*server.threads.values())) == 8


def test_calls_in_flight_stop_at_the_process_limit(http_settings, peer):
    http_settings.PROVIDER_HTTP_MAX_CONNECTIONS = 2
    server = peer(delay=0.2)

    assert _on_threads(5, lambda: _post(server.url)) == [200] * 5
    assert server.most_in_flight == 2


def test_a_call_that_finds_no_free_connection_is_refused_as_never_sent(http_settings, peer):
    http_settings.PROVIDER_HTTP_MAX_CONNECTIONS = 1
    http_settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    server = peer()

    # An answer not yet read and closed holds its call's slot: the one there is.
    with http.client_for("twilio").stream("POST", server.url, data={"Body": "first"}) as held:
        (refused,) = _on_threads(1, lambda: _post(server.url))
        held.read()

    assert isinstance(refused, ProviderError)
    assert refused.code == "pool_timeout"
    assert refused.not_accepted
    assert refused.retryable
    assert len(server.ports) == 1, "the refused call never reached the provider"
    # The slot came back with the answer's close: the next call goes through.
    assert _post(server.url) == 200
    assert len(server.ports) == 2


def test_a_thread_that_ends_closes_its_connection(http_settings, peer):
    server = peer()

    thread = threading.Thread(target=_post, args=(server.url,))
    thread.start()
    thread.join()
    gc.collect()

    (port,) = server.ports
    deadline = time.monotonic() + 5
    while port not in server.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert port in server.closed


def test_closing_the_clients_closes_every_threads_connection(http_settings, peer):
    server = peer()
    done, release = threading.Event(), threading.Event()

    def call_and_stay() -> None:
        _post(server.url)
        done.set()
        release.wait(5)

    thread = threading.Thread(target=call_and_stay)
    thread.start()
    assert done.wait(5)
    try:
        http.clients_close()
        (port,) = server.ports
        deadline = time.monotonic() + 5
        while port not in server.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert port in server.closed, "closed while its thread still runs"
    finally:
        release.set()
        thread.join()
