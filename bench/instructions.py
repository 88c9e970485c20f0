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
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import subprocess
import sys
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


def _requests() -> dict[str, Callable[[], None]]:
    """One callable per scenario, each making one request through the WSGI handler."""
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    from apikeys.services import api_key_create
    from bench.profile import inbound_body, send_body

    application = WSGIHandler()
    _, key = api_key_create(name=f"bench-instructions-{os.getpid()}")
    run = secrets.token_hex(4)
    numbers = iter(range(secrets.randbelow(9 * 10**6), 10**9))  # new senders, whatever ran before

    def post(path: str, body: dict, *, authorised: bool) -> None:
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

    def inbound(n: int, event_id: str) -> None:
        post("/api/webhooks/sms", inbound_body(n, event_id), authorised=False)

    def new_inbound() -> None:
        n = next(numbers)
        inbound(n, f"instructions-{run}-{n}")

    def send() -> None:
        post("/api/messages/sms", send_body(next(numbers)), authorised=True)

    return {
        "ingest": new_inbound,
        "duplicate": lambda: inbound(7, f"instructions-{run}-duplicate"),
        "send": send,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
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
