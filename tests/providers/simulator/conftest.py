"""A simulator on a free port, and a tiny HTTP receiver standing in for the service's webhooks."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import ProxyHandler, Request, build_opener

import pytest

from providers.simulator.app import Simulator
from providers.simulator.config import Behaviour, Credentials, SimulatorConfig

OPENER = build_opener(ProxyHandler({}))
#: Generous bound for waiting on background callbacks; tests poll, they never assert on time.
WAIT_SECONDS = 30


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first ``fail_first`` of them, 200 after that."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_first: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [request for request in self.requests if request.path == path]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            with state.lock:
                state.requests.append(Received(path, query, {k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(state.requests) <= state.fail_first
            status = 500 if failing else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def start_simulator(receiver):
    """start_simulator(credentials=..., **behaviour) -> base URL of a running simulator.

    Callbacks come quickly (10-100 ms) and, unless asked, never twice or reordered."""
    started: list[Simulator] = []

    def start(*, credentials: Credentials | None = None, config: dict | None = None, **behaviour) -> Sim:
        settings = {"callback_delay_ms": (10, 100), "duplicate_rate": 0.0, "out_of_order_rate": 0.0, **behaviour}
        simulator = Simulator(
            SimulatorConfig(
                callback_base_url=receiver.url,
                credentials=credentials or Credentials(),
                behaviour=Behaviour(**settings),
                **(config or {}),
            )
        )
        host, port = simulator.start("127.0.0.1", 0)
        started.append(simulator)
        return Sim(f"http://{host}:{port}", simulator)

    yield start
    for simulator in started:
        simulator.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Sim:
    url: str
    simulator: Simulator

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = WAIT_SECONDS,
    ) -> Reply:
        request = Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with OPENER.open(request, timeout=timeout) as response:
                return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except HTTPError as error:
            return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def post_json(self, path: str, payload, headers: dict | None = None, **kwargs) -> Reply:
        headers = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", path, body=json.dumps(payload).encode(), headers=headers, **kwargs)

    def twilio(
        self,
        fields: dict | list,
        *,
        sid: str = "AC" + "1" * 32,
        token: str = "twilio-token",
        headers: dict | None = None,
        **kwargs,
    ) -> Reply:
        auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
        headers = {
            "Authorization": f"Basic {auth}",
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
        }
        data = urlencode(fields, doseq=True).encode()
        return self.request("POST", f"/2010-04-01/Accounts/{sid}/Messages.json", body=data, headers=headers, **kwargs)

    def sendgrid(self, mail: dict, *, key: str = "sendgrid-key", headers: dict | None = None, **kwargs) -> Reply:
        return self.post_json("/v3/mail/send", mail, {"Authorization": f"Bearer {key}", **(headers or {})}, **kwargs)

    def meta(
        self, node: str, payload: dict, *, token: str = "meta-token", headers: dict | None = None, **kwargs
    ) -> Reply:
        return self.post_json(
            f"/v21.0/{node}/messages", payload, {"Authorization": f"Bearer {token}", **(headers or {})}, **kwargs
        )

    def stats(self) -> dict:
        return self.request("GET", "/stats").json()


def wait_for(condition: Callable[[], object], what: str):
    """Polls until ``condition()`` is truthy (bounded by WAIT_SECONDS); returns its value."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def sms(**overrides) -> dict:
    return {"To": "+15551230001", "From": "+15559870002", "Body": "Hello from the test", **overrides}


def mail(**overrides) -> dict:
    return {
        "personalizations": [{"to": [{"email": "contact@example.com"}]}],
        "from": {"email": "sender@example.com"},
        "subject": "Hello",
        "content": [{"type": "text/html", "value": "<p>Hello</p>"}],
        **overrides,
    }


def whatsapp(**overrides) -> dict:
    return {"messaging_product": "whatsapp", "to": "15551230001", "type": "text", "text": {"body": "Hi"}, **overrides}


def instagram(**overrides) -> dict:
    return {"recipient": {"id": "6543210987654321"}, "message": {"text": "Hi"}, **overrides}


def host_of(url: str) -> str:
    return urlsplit(url).netloc
