"""How HTTP mode holds its provider connections: at most PROVIDER_HTTP_MAX_CONNECTIONS calls in flight
per provider, each on a kept-alive connection of its own, the most recently used reused first, idle
ones closed after the keep-alive, a call that finds no free slot refused as never sent, and the
environment's proxy settings honoured."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers import http
from providers.base import ProviderError
from tests.ports import free_port
from tests.providers.simulator.conftest import wait_for


class _Peer(ThreadingHTTPServer):
    """A provider (or a proxy) that answers every POST after ``delay`` seconds and notes what it saw:
    the connection (client port) and the path of each request, the most requests in flight at once,
    and the connections closed."""

    daemon_threads = True
    request_queue_size = 64  # the standard library's 5 drops some of 8 connections opened at once

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.lock = threading.Lock()
        self.ports: list[int] = []
        self.paths: list[str] = []
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
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.ports.append(self.client_address[1])
            self.server.paths.append(self.path)
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


def test_connections_are_kept_alive_and_the_most_recent_is_reused(http_settings, peer):
    server = peer(delay=0.005)

    def five_calls() -> list[int]:
        return [_post(server.url) for _ in range(5)]

    assert _on_threads(8, five_calls) == [[200] * 5] * 8
    busy = set(server.ports)
    assert len(busy) <= 8, "never more connections than calls in flight"

    # A quiet period: one call at a time, each from a new thread, all on one warm connection.
    for _ in range(10):
        assert _on_threads(1, lambda: _post(server.url)) == [200]
    quiet = server.ports[-10:]
    assert len(set(quiet)) == 1
    assert quiet[0] in busy


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


def test_idle_connections_are_closed_after_the_keepalive(http_settings, peer, monkeypatch):
    monkeypatch.setattr(http, "KEEPALIVE_SECONDS", 0.2)
    server = peer(delay=0.1)
    assert _on_threads(2, lambda: _post(server.url)) == [200, 200]
    first = set(server.ports)
    assert len(first) == 2

    time.sleep(0.4)
    assert _post(server.url) == 200

    assert wait_for(lambda: first <= server.closed, "both idle connections to be closed, not left open")
    assert server.ports[-1] not in first


def test_closing_the_clients_closes_their_connections(http_settings, peer):
    server = peer()
    assert _on_threads(1, lambda: _post(server.url)) == [200]

    http.clients_close()

    assert wait_for(lambda: set(server.ports) <= server.closed, "the clients' connections to be closed")


def test_calls_go_through_the_proxy_the_environment_names(http_settings, peer, monkeypatch):
    proxy = peer()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    http.clients_close()  # the environment is read when a client is made

    assert _post("http://provider.invalid/send") == 200
    assert proxy.paths == ["http://provider.invalid/send"], "asked of the proxy, in absolute form"


def test_no_proxy_hosts_are_called_directly(http_settings, peer, monkeypatch):
    server = peer()
    dead = free_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    http.clients_close()

    assert _post(server.url) == 200
    assert server.paths == ["/send"]
