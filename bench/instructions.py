"""Instructions per request, counted by callgrind rather than timed: the service in-process, through
Django's WSGI handler (no test client, no server), one request at a time, production settings, 0 ms
mock provider. Counts repeat to about 0.1% (one run in 14 read 2.5% high: count twice), where
timings on a shared 2-core machine swing by 2x, so two commits can be compared on changes worth a few
percent.

    DATABASE_URL=postgresql://.../a_migrated_database REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.instructions [--scenarios ingest,duplicate,send]

For each scenario it runs itself twice under ``valgrind --tool=callgrind`` (Debian: ``apt-get install
valgrind``), each time with its start-up objects frozen out of the garbage collector as a web process
has them (``core.startup``; since the eighteenth round, whose counts with and without it agreed
within 0.2%), a warm-up of 50 requests and then 50 or 250 more, and prints the difference of the two
totals divided by 200: start-up, imports and warm-up cancel out. Only the Python process
is counted (not PostgreSQL or Redis). Each scenario makes 400 requests, whose rows stay in the
database; the Redis database takes the rate-limit counters and the mock provider's ledger.
docs/PERFORMANCE.md has the figures of each round that used it.

With ``--served`` it counts a gunicorn process instead, serving the requests over HTTP as `make
bench` serves them (gunicorn.conf.py's settings, one process of 8 threads, started under callgrind
with its instrumentation off): the harness makes 50 requests to warm it up, turns the process's
instrumentation on (``callgrind_control -i on``), makes 50 requests and dumps the count, then 250
more and dumps again, and prints the difference divided by 200. That count holds gunicorn's own
Python for each request (reading it, answering it) and the process's run loop, which the in-process
count leaves out (two counts of the same code agreed within 0.35% on the thirty-first round's
machine); the harness's own requests are not counted. Scenarios ``health`` (``GET
/health``, the least a request does) and those above:

    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m bench.instructions --served [--scenarios health,ingest]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("ingest", "duplicate", "send")
WARM_UP = 50
FEWER, MORE = 50, 250


def _environment() -> dict[str, str]:
    """The service's environment as `make bench` gives it (production settings, API keys required,
    webhook signatures off, the in-process mock provider at 0 ms), with one hash seed for every
    counted process."""
    from bench.run import service_environment  # not in the counted processes

    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            raise SystemExit(f"bench.instructions: {name} is required (a migrated database; a Redis database)")
    env = service_environment(
        database_url=os.environ["DATABASE_URL"], redis_url=os.environ["REDIS_URL"], secret_key=secrets.token_urlsafe(48)
    )
    env["PYTHONHASHSEED"] = "0"
    return env


def _counted(scenario: str, requests: int, env: dict[str, str]) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--run",
        scenario,
        "--requests",
        str(requests),
    ]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or collected is None:
        raise SystemExit(f"bench.instructions: {scenario} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return int(collected[1])


def _api_key() -> str:
    """A new API key for the send scenario (Django set up first: the harness's own process)."""
    import django

    django.setup()
    from apikeys.services import api_key_create

    _, key = api_key_create(name=f"bench-instructions-{os.getpid()}")
    return key


def _scenario_requests(post: Callable[[str, dict, bool], None]) -> dict[str, Callable[[], None]]:
    """One callable per scenario, each making its request with ``post(path, body, authorised)``: an
    inbound message from a new sender with a new id, the same duplicate each time, a send from a new
    sender."""
    from bench.profile import inbound_body, send_body

    run = secrets.token_hex(4)
    numbers = iter(range(secrets.randbelow(9 * 10**6), 10**9))  # new senders, whatever ran before

    def new_inbound() -> None:
        n = next(numbers)
        post("/api/webhooks/sms", inbound_body(n, f"instructions-{run}-{n}"), False)

    return {
        "ingest": new_inbound,
        "duplicate": lambda: post("/api/webhooks/sms", inbound_body(7, f"instructions-{run}-duplicate"), False),
        "send": lambda: post("/api/messages/sms", send_body(next(numbers)), True),
    }


def _requests() -> dict[str, Callable[[], None]]:
    """One callable per scenario, each making one request through the WSGI handler."""
    key = _api_key()
    from django.core.handlers.wsgi import WSGIHandler

    application = WSGIHandler()

    def post(path: str, body: dict, authorised: bool) -> None:
        data = json.dumps(body).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_X_FORWARDED_PROTO": "https",  # as the TLS-terminating proxy sets it
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": io.BytesIO(data),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        if authorised:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        statuses: list[str] = []

        def start_response(status: str, headers: list, exc_info: object = None) -> Callable[[bytes], object]:
            statuses.append(status)
            return lambda data: None

        response = application(environ, start_response)
        try:
            answer = b"".join(response)
        finally:
            response.close()  # as a WSGI server does: Django's request_finished (closing old connections)
        if not statuses[0].startswith("2"):
            raise SystemExit(f"bench.instructions: {path} answered {statuses[0]}: {answer[:300]!r}")

    return _scenario_requests(post)


def _http_requests(port: int, env: dict[str, str]) -> dict[str, Callable[[], None]]:
    """The same scenarios (and ``health``), each making one request over a kept-alive HTTP connection
    to ``port``."""
    os.environ.update(env)
    key = _api_key()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    forwarded = {"Host": "127.0.0.1", "X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy sets it

    def ask(method: str, path: str, body: dict | None = None, authorised: bool = False) -> None:
        headers = dict(forwarded)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if authorised:
            headers["Authorization"] = f"Bearer {key}"
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        answer = connection.getresponse()
        text = answer.read()
        if not 200 <= answer.status < 300:
            raise SystemExit(f"bench.instructions: {method} {path} answered {answer.status}: {text[:300]!r}")

    def post(path: str, body: dict, authorised: bool) -> None:
        ask("POST", path, body, authorised)

    return {"health": lambda: ask("GET", "/health"), **_scenario_requests(post)}


def _served(scenarios: list[str], env: dict[str, str]) -> dict[str, int]:
    """Instructions per request of one gunicorn process serving each scenario (``--served``)."""
    from bench.run import GUNICORN

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as out:
        command = [
            *("valgrind", "--tool=callgrind", "--trace-children=yes", "--instr-atstart=no"),
            f"--callgrind-out-file={out}/callgrind.%p",
            *(GUNICORN, "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--no-control-socket"),
            *("--worker-class", "gthread", "--workers", "1", "--threads", "8", "--timeout", "300"),
            *("--keep-alive", "600"),  # the harness's connection stays open while a count is dumped
        ]
        log = Path(out, "gunicorn.log")
        with log.open("w") as written:
            server = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=written, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            worker = _served_worker(server, port, log)
            requests = _http_requests(port, env)
            for scenario in scenarios:
                request = requests[scenario]
                for _ in range(WARM_UP):
                    request()
                totals = []
                for count in (FEWER, MORE):
                    _callgrind_control("--instr=on", worker)
                    for _ in range(count):
                        request()
                    _callgrind_control("--instr=off", worker)
                    totals.append(_dumped(worker, Path(out)))
                report[scenario] = round((totals[1] - totals[0]) / (MORE - FEWER))
                print(f"{scenario}: {report[scenario]:,} instructions per request (served)", file=sys.stderr)
        finally:
            _stop(server)
    return report


def _stop(server: subprocess.Popen) -> None:
    """Stops gunicorn and its worker (its own process group) before their dumps' directory goes."""
    for signal_to_send, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal_to_send)
        try:
            server.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    time.sleep(1)  # the worker, a child of the master, ends with it


def _served_worker(server: subprocess.Popen, port: int, log: Path) -> int:
    """The process id of the gunicorn worker once it answers (under callgrind, a minute or two)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench.instructions: gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            probe.request("GET", "/health")
            answered = probe.getresponse().status == 200
            probe.close()
        except OSError:
            answered = False
        if answered:
            try:
                children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            except OSError as error:
                raise SystemExit(f"bench.instructions: cannot find gunicorn's worker in /proc: {error}") from None
            if len(children) != 1:
                raise SystemExit(f"bench.instructions: gunicorn has {len(children)} processes, not the one started")
            return int(children[0])
        time.sleep(1)
    raise SystemExit(f"bench.instructions: gunicorn did not start within 300 s:\n{log.read_text()[-3000:]}")


def _callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def _dumped(pid: int, out: Path) -> int:
    """Dumps ``pid``'s count (which zeroes it) and returns it."""
    before = set(out.glob(f"callgrind.{pid}.*"))
    _callgrind_control("--dump", pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(out.glob(f"callgrind.{pid}.*")) - before
        for path in new:
            totals = re.search(r"^totals: (\d+)\n", path.read_text(), re.MULTILINE)  # written whole
            if totals:
                return int(totals[1])
        time.sleep(0.2)
    raise SystemExit(f"bench.instructions: no dump of process {pid} within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--served", action="store_true", help="count a gunicorn process serving over HTTP")
    parser.add_argument("--run", choices=SCENARIOS, help=argparse.SUPPRESS)  # one counted process
    parser.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        request = _requests()[args.run]
        # As a web process before it serves (config/gunicorn.py): full collections walk only what came later.
        from core.startup import freeze_start_up_objects

        freeze_start_up_objects(urlconf=True)
        for _ in range(WARM_UP + args.requests):
            request()
        return
    env = _environment()
    if args.served:
        scenarios = args.scenarios.split(",")
        unknown = [scenario for scenario in scenarios if scenario not in ("health", *SCENARIOS)]
        if unknown:
            raise SystemExit(f"bench.instructions: unknown scenario {unknown[0]!r} (health, {', '.join(SCENARIOS)})")
        print(json.dumps(_served(scenarios, env)))
        return
    report = {}
    for scenario in args.scenarios.split(","):
        if scenario not in SCENARIOS:
            raise SystemExit(f"bench.instructions: unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
        fewer, more = _counted(scenario, FEWER, env), _counted(scenario, MORE, env)
        report[scenario] = round((more - fewer) / (MORE - FEWER))
        print(f"{scenario}: {report[scenario]:,} instructions per request", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
