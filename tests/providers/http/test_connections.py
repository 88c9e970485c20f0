"""How HTTP mode holds its provider connections: at most PROVIDER_HTTP_MAX_CONNECTIONS calls in flight
per provider, each on a kept-alive connection of its own, the most recently used reused first, idle
ones closed after the keep-alive, a call that finds no free slot refused as never sent, and the
environment's proxy settings honoured."""

from __future__ import annotations

import gzip
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
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
        #: How answers say where they end: "length" (Content-Length), "chunked", "until-close" (no
        #: length: the connection's close ends it), "short" (a Content-Length it does not send) or
        #: "stall" (``Connection: close`` and a Content-Length it does not send, then nothing for 2 s).
        self.framing = "length"
        #: For each "stall" answer: whether the client closed the connection within those 2 s.
        self.client_closed: list[bool] = []
        #: Compress the answer's body (``Content-Encoding: gzip``), whatever the request asked for.
        self.gzip = False
        #: Close each connection after its answer (as a server's idle timeout would), without saying so.
        self.close_after_answer = False
        #: Raw lines sent before the answer (an interim 1xx answer, say).
        self.before_answer = b""
        #: Headers added to the answer, written as Latin-1 as the standard library's server writes them.
        self.extra_headers: dict[str, str] = {}
        #: Each request as it came: its request line, its headers in order, its body.
        self.requests: list[tuple[str, list[tuple[str, str]], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"

    def handle_error(self, request, client_address) -> None:
        pass  # a client refusing this peer's certificate breaks off the handshake: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Peer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.requests.append((self.requestline, list(self.headers.items()), body))
            self.server.ports.append(self.client_address[1])
            self.server.paths.append(self.path)
            self.server.in_flight += 1
            self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)
        time.sleep(self.server.delay)
        with self.server.lock:
            self.server.in_flight -= 1
        body = b"{}" if self.server.framing == "length" else b'{"sid": "SM1", "status": "queued"}'
        if self.server.gzip:
            body = gzip.compress(body)
        self.wfile.write(self.server.before_answer)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.server.gzip:
            self.send_header("Content-Encoding", "gzip")
        for name, value in self.server.extra_headers.items():
            self.send_header(name, value)
        if self.server.framing == "stall":
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(body) + 10))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.settimeout(2.0)
            try:
                closed = self.connection.recv(1) == b""
            except TimeoutError:
                closed = False
            self.server.client_closed.append(closed)
            self.close_connection = True
        elif self.server.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(body) // 2
            for chunk in (body[:half], body[half:], b""):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            if self.server.framing == "until-close":
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body) + (10 if self.server.framing == "short" else 0)))
                self.close_connection = self.server.framing == "short" or self.server.close_after_answer
            self.end_headers()
            self.wfile.write(body)

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


def test_a_connection_the_provider_closed_while_idle_is_not_used(http_settings, peer):
    server = peer()
    server.close_after_answer = True  # closes each connection after its answer, without saying so
    assert _post(server.url) == 200
    first = server.ports[-1]
    assert wait_for(lambda: first in server.closed, "the provider to close the idle connection")

    assert _post(server.url) == 200, "not a lost connection: the closed one was never written to"
    assert server.ports[-1] != first


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_answers_without_a_content_length_are_read_whole(http_settings, peer, framing):
    server = peer()
    server.framing = framing

    for _ in range(2):
        response = http.http_post(provider="twilio", call=http.HttpCall(url=server.url, data={"Body": "hi"}))
        assert response.status_code == 200
        assert response.json() == {"sid": "SM1", "status": "queued"}
    assert len(set(server.ports)) == (1 if framing == "chunked" else 2), "kept alive only when the framing allows"


def test_an_answer_cut_short_is_a_lost_connection_that_may_have_been_accepted(http_settings, peer):
    server = peer()
    server.framing = "short"

    with pytest.raises(ProviderError) as caught:
        _post(server.url)

    assert (caught.value.code, caught.value.retryable, caught.value.not_accepted) == ("connection_lost", True, False)


@pytest.fixture
def tls_peer(peer, tmp_path):
    """A peer serving HTTPS on 127.0.0.1 with a certificate of its own, for 127.0.0.1 unless ``named``
    says otherwise; returns (server, its CA file)."""

    def start(named: str = "127.0.0.1"):
        return _tls_peer(peer, tmp_path, named)

    return start


def _tls_peer(peer, tmp_path, named: str):
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, named)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(named))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = peer()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server, cert_file


def test_https_calls_check_the_providers_certificate_and_keep_the_connection(http_settings, tls_peer, monkeypatch):
    server, ca_file = tls_peer()
    url = server.url.replace("http://", "https://")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # read when a client is made
    http.clients_close()

    assert [_post(url) for _ in range(3)] == [200, 200, 200]
    assert len(set(server.ports)) == 1


def test_an_https_provider_with_an_untrusted_certificate_is_never_sent_to(http_settings, tls_peer):
    server, _ = tls_peer()

    with pytest.raises(ProviderError) as caught:
        _post(server.url.replace("http://", "https://"))

    assert (caught.value.code, caught.value.retryable, caught.value.not_accepted) == ("connection_refused", True, True)
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert server.paths == []


def test_a_trusted_certificate_for_another_name_is_never_sent_to(http_settings, tls_peer, monkeypatch):
    server, ca_file = tls_peer(named="127.0.0.2")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    http.clients_close()

    with pytest.raises(ProviderError) as caught:
        _post(server.url.replace("http://", "https://"))

    assert (caught.value.code, caught.value.not_accepted) == ("connection_refused", True)
    assert "mismatch" in caught.value.message
    assert server.paths == []


def test_an_interim_answer_before_the_answer_is_a_lost_connection_that_may_have_been_accepted(http_settings, peer):
    server = peer()
    server.before_answer = b"HTTP/1.1 103 Early Hints\r\nLink: </terms>; rel=preload\r\n\r\n"

    with pytest.raises(ProviderError) as caught:
        _post(server.url)

    assert (caught.value.code, caught.value.retryable, caught.value.not_accepted) == ("connection_lost", True, False)
    server.before_answer = b""
    assert _post(server.url) == 200
    assert server.ports[-1] != server.ports[0], "the connection with an answer left unread is not used again"


def test_answer_headers_outside_ascii_are_read(http_settings, peer):
    server = peer()
    server.extra_headers = {"X-Note": "résumé"}

    response = http.http_post(provider="twilio", call=http.HttpCall(url=server.url, data={"Body": "hi"}))

    assert response.status_code == 200
    assert response.headers["X-Note"] == "résumé"


def test_an_answer_closed_unread_leaves_its_connection_unused(http_settings, peer):
    server = peer()
    server.framing = "chunked"
    with http.client_for("twilio").stream("POST", server.url, data={"Body": "first"}):
        pass  # closed without reading the body

    assert _post(server.url) == 200
    assert len(set(server.ports)) == 2


#: Calls as the adapters make them, and the corners of httpx's encoding: form values that are lists,
#: booleans, None and numbers; text outside ASCII; a query string; a Content-Type or an Authorization
#: the call gives itself; no body at all.
_CALLS = {
    "form-with-basic-auth": {
        "headers": {"I-Twilio-Idempotency-Token": "token-1", "Accept": "application/json"},
        "data": {
            "To": "+15550000002",
            "From": "+15550000001",
            "Body": "héllo & =?+ 😀",
            "MediaUrl": ["https://media.example/a.png", "https://media.example/b c.png"],
            "Flag": True,
            "Off": False,
            "Nothing": None,
            "Count": 3,
        },
        "auth": ("AC" + "7" * 32, "tökén"),
    },
    "json-with-a-bearer": {
        "headers": {"Authorization": "Bearer SG.key", "Idempotency-Key": "key-1"},
        "json": {"content": [{"type": "text/plain", "value": "é 😀"}], "ratio": 1.5, "none": None},
    },
    "content-type-of-its-own": {"headers": {"Content-Type": "application/json; charset=utf-8"}, "json": {"a": 1}},
    "auth-over-a-header": {"headers": {"Authorization": "Bearer other"}, "data": {"a": "b"}, "auth": ("user", "pass")},
    "no-body": {},
    "credentials-in-the-url": {"userinfo": "us%40er:pa%20ss@", "headers": {"Authorization": "Bearer other"}},
    "credentials-in-the-url-and-the-call": {"userinfo": "url-user:url-pass@", "auth": ("call-user", "call-pass")},
}


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_the_direct_path_writes_what_httpx_writes(http_settings, peer, monkeypatch, name):
    server = peer()
    given = dict(_CALLS[name])
    url = server.url.replace("http://", "http://" + given.pop("userinfo", "")) + "?Version=2"
    call = http.HttpCall(url=url, **given)
    http.client_for("twilio").headers["X-Sim-Fail"] = "none"  # the client's own headers go on every call

    with monkeypatch.context() as direct_only:
        direct_only.setattr(httpx.Client, "send", _not_through_httpx)
        assert http.http_post(provider="twilio", call=call).status_code == 200
    monkeypatch.setattr(http._ProviderClient, "post_direct", lambda client, url, call: None)
    assert http.http_post(provider="twilio", call=call).status_code == 200

    (direct, through_httpx) = server.requests
    assert direct == through_httpx
    assert len(set(server.ports)) == 1, "both on the one kept-alive connection"


def _not_through_httpx(*args, **kwargs):
    raise AssertionError("a direct call built an httpx request")


def test_a_call_through_a_proxy_goes_through_httpx(http_settings, peer, monkeypatch):
    proxy = peer()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    http.clients_close()
    monkeypatch.setattr(httpx.Client, "send", _not_through_httpx)

    with pytest.raises(AssertionError, match="built an httpx request"):
        _post("http://provider.invalid/send")
    assert proxy.paths == []


def test_a_direct_answer_reads_as_an_httpx_answer_does(http_settings, peer):
    server = peer()
    server.extra_headers = {"Retry-After": "7", "X-Message-Id": "abc"}

    answer = http.http_post(provider="twilio", call=http.HttpCall(url=server.url, data={"Body": "hi"}))

    assert isinstance(answer, http.Answer)
    assert (answer.status_code, answer.reason_phrase, answer.is_success) == (200, "OK", True)
    assert answer.json() == {}
    assert answer.content == b"{}"
    assert answer.headers.get("x-message-id") == "abc"
    assert http.retry_after(answer) == 7.0


def test_a_direct_call_is_logged_only_at_debug(http_settings, peer, caplog):
    server = peer()

    with caplog.at_level(logging.INFO, logger="providers.http"):
        _post(server.url)
    with caplog.at_level(logging.DEBUG, logger="providers.http"):
        _post(server.url)

    lines = [record.getMessage() for record in caplog.records if record.name == "providers.http"]
    assert lines == [f'HTTP Request: POST {server.url} "HTTP/1.1 200 OK"']


def test_a_compressed_answer_is_read_as_httpx_reads_it(http_settings, peer):
    server = peer()
    server.gzip = True  # although every request says Accept-Encoding: identity

    answer = http.http_post(provider="twilio", call=http.HttpCall(url=server.url, data={"Body": "hi"}))

    assert answer.json() == {}
    assert answer.headers["Content-Encoding"] == "gzip"
    assert [dict(headers)["Accept-Encoding"] for _, headers, _ in server.requests] == ["identity"]


def test_every_failure_gives_its_call_slot_and_connection_back(http_settings, peer):
    http_settings.PROVIDER_HTTP_MAX_CONNECTIONS = 1  # a slot kept by one failure refuses every later call
    http_settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    server = peer()
    failures = []
    for framing, before_answer in [("short", b""), ("length", b"HTTP/1.1 103 Early Hints\r\n\r\n"), ("stall", b"")]:
        server.framing, server.before_answer = framing, before_answer
        with pytest.raises(ProviderError) as caught:
            _post(server.url)
        failures.append((caught.value.code, caught.value.retryable, caught.value.not_accepted))
    server.framing, server.before_answer = "length", b""

    assert failures == [("connection_lost", True, False), ("connection_lost", True, False), ("timeout", True, False)]
    assert _post(server.url) == 200
    assert len(set(server.ports)) == 4, "no connection that failed was used again"


def test_a_connection_whose_answer_stopped_midway_is_closed_at_once(http_settings, peer):
    http_settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    server = peer()
    server.framing = "stall"  # Connection: close, so the answer holds the socket, not the connection

    with pytest.raises(ProviderError) as caught:
        _post(server.url)

    assert caught.value.code == "timeout"  # and while the failure is still held here:
    assert wait_for(lambda: server.client_closed, "the peer to see the connection closed or give up")
    assert server.client_closed == [True], "closed when the call failed, not when the failure is dropped"
