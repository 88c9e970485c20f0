"""The simulator's HTTP server: a threaded HTTP/1.1 server (one thread per connection, keep-alive)
from the standard library, routing to the fake provider APIs, the control endpoints and inbound."""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from providers.simulator.apis import FakeApi, Request, SendRequest, json_answer
from providers.simulator.callbacks import CallbackDispatcher, plan
from providers.simulator.config import MODES, BehaviourBox, SimulatorConfig
from providers.simulator.fake_meta import FakeMeta, FakeSeedMeta
from providers.simulator.fake_sendgrid import FakeSendGrid
from providers.simulator.fake_twilio import FakeTwilio
from providers.simulator.faults import HEADER as FAULT_HEADER
from providers.simulator.faults import Fault, FaultSyntaxError, parse_fault
from providers.simulator.inbound import InboundInvalid, email_batch, meta_batch, sms_batch
from providers.simulator.state import Answer, IdempotencyLedger, MessageLog, Stats

logger = logging.getLogger("providers.simulator")

#: Request bodies above this are refused before they are read (SendGrid's own limit is 30 MB).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: An idle keep-alive connection is closed after this long.
IDLE_TIMEOUT_SECONDS = 75
_NOT_JSON = b'{"broken": "this answer is cut short and is not JSON'


@dataclass(frozen=True)
class Reply:
    answer: Answer
    #: Hold the answer back this long (the ``timeout`` fault).
    delay: float = 0.0
    #: "before": close the connection without answering; "mid": write part of the answer, then reset.
    cut: str | None = None


def error_answer(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Answer:
    """The project's error envelope, for the simulator's own endpoints."""
    return json_answer(status, {"error": {"code": code, "message": message, "details": details or {}}})


class Simulator:
    def __init__(self, config: SimulatorConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.behaviour = BehaviourBox(config.behaviour)
        self.stats = Stats()
        self.channels = MessageLog()
        self.ledger = IdempotencyLedger(config.max_tokens)
        self.dispatcher = CallbackDispatcher(
            stats=self.stats,
            attempts=config.callback_attempts,
            timeout=config.callback_timeout_seconds,
            workers=config.callback_workers,
        )
        self.dispatcher.set_paused(config.behaviour.callbacks_paused)
        self.apis: list[FakeApi] = [FakeTwilio(config), FakeSendGrid(config), FakeMeta(config), FakeSeedMeta(config)]
        self._sendgrid = self.apis[1]
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.stopping = threading.Event()
        self._serving = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Life cycle

    def bind(self, host: str, port: int) -> tuple[str, int]:
        """Opens the listening socket (port 0: any free port) and starts the callback scheduler."""
        server = _Server((host, port), _Handler)
        server.simulator = self
        self._server = server
        self.dispatcher.start()
        bound_host, bound_port = server.server_address[:2]
        return str(bound_host), int(bound_port)

    def serve_forever(self) -> None:
        assert self._server is not None, "bind() first"
        self._serving.set()
        self._server.serve_forever(poll_interval=0.2)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """bind() and serve in a background thread (tests, embedding); returns the bound address."""
        address = self.bind(host, port)
        self._thread = threading.Thread(target=self.serve_forever, name="provider-sim", daemon=True)
        self._thread.start()
        return address

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            if self._serving.is_set():  # shutdown() waits for serve_forever(), which may never have run
                self._server.shutdown()
            self._server.server_close()
        self.dispatcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # Routing

    def handle(self, request: Request) -> Reply:
        for api in self.apis:
            match = api.path.fullmatch(request.path)
            if match:
                if request.method != "POST":
                    return Reply(error_answer(405, "method_not_allowed", f"{request.method} is not allowed here."))
                return self.provider_call(api, request, match)
        route = _ROUTES.get(request.path.rstrip("/") or "/")
        if route is None:
            return Reply(error_answer(404, "not_found", f"Nothing at {request.path}."))
        name = route.get(request.method)
        if name is None:
            return Reply(error_answer(405, "method_not_allowed", f"{request.method} is not allowed here."))
        return Reply(getattr(self, name)(request))

    # Provider APIs

    def provider_call(self, api: FakeApi, request: Request, match: re.Match[str]) -> Reply:
        self.stats.add(api.name, "requests")
        behaviour = self.behaviour.get(time.monotonic())
        low, high = behaviour.latency_ms
        if high:
            self.stopping.wait(self._uniform(low, high) / 1000)
        try:
            fault = self._fault(request, behaviour)
        except FaultSyntaxError as error:
            self.stats.add(api.name, "errors")
            return Reply(error_answer(400, "invalid_fault", str(error)))
        refusal = api.authenticate(request)
        parsed = api.parse(request, match) if refusal is None else refusal
        if isinstance(parsed, Answer):
            self.stats.add(api.name, "errors")
            return Reply(parsed)
        if fault is not None and not fault.accepts:
            self.stats.add(api.name, "errors")
            return self._refuse(api, fault, parsed)
        answer, replayed = self.ledger.remember_or_replay(
            api=api.name, token=parsed.token, accept=lambda: api.accept(parsed)
        )
        if replayed:
            self.stats.add(api.name, "replays")
        else:
            self.stats.add(api.name, "sends")
            self.channels.add(answer.accepted.channel)
            self._schedule_callbacks(api, answer, behaviour)
        if fault is None:
            return Reply(answer)
        self.stats.add(api.name, "errors")
        if fault.kind == "timeout":
            seconds = fault.seconds if fault.seconds is not None else behaviour.timeout_seconds
            return Reply(answer, delay=seconds)
        if fault.kind == "reset":
            return Reply(answer, cut="mid")
        return Reply(Answer(answer.status, _NOT_JSON, (("Content-Type", "application/json"), *_without_type(answer))))

    def _fault(self, request: Request, behaviour) -> Fault | None:
        header = request.header(FAULT_HEADER)
        if header:
            return parse_fault(header)
        if behaviour.mode == "down":
            return Fault(kind="status", status=503, retry_after=behaviour.retry_after)
        if behaviour.mode == "ratelimit":
            return Fault(kind="status", status=429, retry_after=behaviour.retry_after)
        if behaviour.mode == "timeout":
            return Fault(kind="timeout")
        if behaviour.mode == "reset":
            return Fault(kind="reset-before")
        if behaviour.failure_rate and self._random() < behaviour.failure_rate:
            return Fault(kind="status", status=503)
        return None

    def _refuse(self, api: FakeApi, fault: Fault, parsed: SendRequest) -> Reply:
        if fault.kind == "reset-before":
            return Reply(Answer(500), cut="before")
        if fault.kind == "invalid-json":
            return Reply(
                Answer(fault.status or 500, b"<html><body>Bad Gateway</body></html>", (("Content-Type", "text/html"),))
            )
        status = fault.status or 503
        return Reply(api.error(status, code=fault.code, retry_after=fault.retry_after, send=parsed))

    def _schedule_callbacks(self, api: FakeApi, answer: Answer, behaviour) -> None:
        if not behaviour.callbacks:
            return
        delivered = self._random() >= behaviour.undelivered_rate
        callbacks = api.status_callbacks(answer.accepted, delivered=delivered)
        with self._rng_lock:
            planned = plan(callbacks, behaviour, self._rng)
        for delay, callback, duplicate in planned:
            self.dispatcher.schedule(callback, delay, duplicate=duplicate)

    def _random(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def _uniform(self, low: float, high: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(low, high)

    # The simulator's own endpoints

    def get_health(self, request: Request) -> Answer:
        return json_answer(200, {"status": "ok"})

    def get_stats(self, request: Request) -> Answer:
        stats: dict[str, Any] = self.stats.snapshot()
        stats["callbacks"]["pending"] = self.dispatcher.pending()
        stats["channels"] = self.channels.snapshot()
        return json_answer(200, stats)

    def reset_stats(self, request: Request) -> Answer:
        """Zeroes the counters. ``?forget=true`` also forgets idempotency tokens and pending callbacks."""
        self.stats.reset()
        self.channels.reset()
        if "forget=true" in request.query.split("&"):
            self.ledger.clear()
            self.dispatcher.clear()
        return self.get_stats(request)

    def get_control(self, request: Request) -> Answer:
        return json_answer(200, self._control_view())

    def set_control(self, request: Request) -> Answer:
        try:
            changes = request.json()
        except ValueError:
            return error_answer(400, "parse_error", "The body must be JSON.")
        if not isinstance(changes, dict):
            return error_answer(400, "validation_error", "The body must be a JSON object.")
        seconds = changes.pop("seconds", None)
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0):
            return error_answer(400, "validation_error", "seconds must be a positive number.", {"seconds": ["> 0"]})
        if seconds is not None and "mode" not in changes:
            return error_answer(
                400, "validation_error", "seconds applies to a mode change.", {"seconds": ["needs mode"]}
            )
        try:
            behaviour = self.behaviour.update(changes, now=time.monotonic(), mode_seconds=seconds)
        except (ValueError, TypeError) as error:
            return error_answer(400, "validation_error", str(error), {"modes": list(MODES)})
        self.dispatcher.set_paused(behaviour.callbacks_paused)
        logger.info("control: %s", json.dumps(changes))
        return json_answer(200, self._control_view())

    def _control_view(self) -> dict[str, Any]:
        now = time.monotonic()
        view = self.behaviour.get(now).as_json()
        until = self.behaviour.mode_until()
        view["mode_seconds_left"] = round(until - now, 3) if until is not None else None
        return view

    def simulate_inbound(self, request: Request) -> Answer:
        return self._inbound(request, lambda body: meta_batch(body, self.config))

    def simulate_inbound_sms(self, request: Request) -> Answer:
        return self._inbound(request, lambda body: sms_batch(body, self.config))

    def simulate_inbound_email(self, request: Request) -> Answer:
        return self._inbound(request, lambda body: email_batch(body, self.config, self._sendgrid))

    def _inbound(self, request: Request, build) -> Answer:
        """Posts the batch now, in order, each with retries; answers with every delivery's outcome:
        200 when the service took them all, 502 when one was not accepted."""
        try:
            batch = build(request.json())
        except InboundInvalid as error:
            return error_answer(400, "validation_error", error.message, error.details)
        except ValueError:
            return error_answer(400, "parse_error", "The body must be JSON.")
        deliveries = [self.dispatcher.deliver_now(callback) for callback in batch.callbacks]
        status = 200 if all(delivery.ok for delivery in deliveries) else 502
        return json_answer(status, {"deliveries": [delivery.as_json() for delivery in deliveries]})


#: path -> method -> Simulator method name.
_ROUTES: dict[str, dict[str, str]] = {
    "/health": {"GET": "get_health", "HEAD": "get_health"},
    "/stats": {"GET": "get_stats"},
    "/stats/reset": {"POST": "reset_stats"},
    "/control": {"GET": "get_control", "POST": "set_control"},
    "/simulate/inbound": {"POST": "simulate_inbound"},
    "/simulate/inbound/sms": {"POST": "simulate_inbound_sms"},
    "/simulate/inbound/email": {"POST": "simulate_inbound_email"},
}


def _without_type(answer: Answer) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in answer.headers if name.lower() != "content-type")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Connections waiting for the accept loop (the kernel caps it at net.core.somaxconn): three outbox
    # workers open up to 3 x 256 at once, which a provider's edge takes in its stride; with 256 the
    # accept loop fell behind, handshakes were dropped and the workers' connects timed out.
    request_queue_size = 4096
    simulator: Simulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "provider-simulator/1"
    timeout = IDLE_TIMEOUT_SECONDS
    # An answer leaves in one write (headers and body buffered, flushed by ``_write``) on a socket that
    # sends at once (TCP_NODELAY), as the standard library advises for the pair. Unbuffered, the
    # headers and the body were two writes, and Nagle's algorithm held the body back until the client
    # acknowledged the headers, which it delays by up to 40 ms: every answer took 44 ms whatever
    # ``--latency-ms`` said.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _Server

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` (curl sends it with a large body): the interim answer goes out at
        once, since the client waits for it before sending the body."""
        accepted = super().handle_expect_100()
        self.wfile.flush()
        return accepted

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        simulator = self.server.simulator
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._write(error_answer(411, "length_required", "Send a Content-Length; chunked bodies are not read."))
            self.close_connection = True
            return
        try:
            size = int(length) if length else 0
        except ValueError:
            size = -1
        if size < 0 or size > MAX_REQUEST_BYTES:
            self._write(error_answer(413, "too_large", f"Bodies up to {MAX_REQUEST_BYTES} bytes."))
            self.close_connection = True
            return
        body = self.rfile.read(size) if size else b""
        path, _, query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            query=query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            reply = simulator.handle(request)
        except Exception:
            logger.exception("simulator error on %s %s", self.command, path)
            reply = Reply(error_answer(500, "simulator_error", "The simulator failed; see its log."))
        if reply.delay and simulator.stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.cut == "before":
            self._reset()
            return
        if reply.cut == "mid":
            self._write(reply.answer, partial=True)
            self._reset()
            return
        self._write(reply.answer)

    def _write(self, answer: Answer, *, partial: bool = False) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        # A cut answer promises more bytes than it sends, so even an empty 202 is visibly incomplete.
        self.send_header("Content-Length", str(len(answer.body) + (64 if partial else 0)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body[: len(answer.body) // 2] if partial else answer.body)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0): the client sees the connection reset, not a clean end."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A line per accepted request only at DEBUG: three outbox workers send the simulator over a
        # thousand calls a second, and a line each (formatted, then written under the handler's
        # lock) cost it about a tenth of its CPU per call (docs/PERFORMANCE.md, twenty-fifth round).
        # An error answer (a fault, a refusal) keeps its line at INFO.
        status = code.value if isinstance(code, HTTPStatus) else code
        level = logging.INFO if isinstance(status, int) and status >= 400 else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, '%s "%s" %s %s', self.address_string(), self.requestline, status, size)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)
