#!/usr/bin/env python3
"""The live check of HTTP mode (docs/PROVIDERS.md), end to end on this machine, no Docker:

1. starts the provider simulator and the service (gunicorn via bin/start.sh) with PROVIDER_MODE=http,
   the three base URLs pointing at the simulator, every secret set and webhook signatures required;
2. sends on all four channels over HTTP: each answers 201, the simulator's /stats counts each send,
   and its signed status callbacks come back and move every message to ``delivered``;
3. stops the simulator: four more sends answer 202 ``pending``;
4. starts the simulator again and runs ``manage.py run_worker``: each pending message is delivered,
   and the new simulator counts exactly one send per message (no replays, nothing sent twice).

Usage: DATABASE_URL=postgresql://... .venv/bin/python bin/provider_http_check.py [--app-port N] [--sim-port N]
It creates a throwaway database beside DATABASE_URL's and drops it at the end. Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import ProxyHandler, Request, build_opener

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
OPENER = build_opener(ProxyHandler({}))
WAIT_SECONDS = 60
SECRETS = {
    "TWILIO_ACCOUNT_SID": "AC" + uuid.uuid4().hex,
    "TWILIO_AUTH_TOKEN": uuid.uuid4().hex,
    "SENDGRID_API_KEY": "SG." + uuid.uuid4().hex,
    "SENDGRID_WEBHOOK_VERIFICATION_KEY": uuid.uuid4().hex,
    "META_ACCESS_TOKEN": uuid.uuid4().hex,
    "META_APP_SECRET": uuid.uuid4().hex,
    "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "INSTAGRAM_ACCOUNT_ID": "17841400000000042",
}
SENDS = [
    {"channel": "sms", "from": "+12015550100", "to": "+18045550101", "body": "SMS over HTTP"},
    {"channel": "email", "from": "team@example.com", "to": "contact@example.com", "body": "<p>E-mail over HTTP</p>"},
    {"channel": "whatsapp", "to": "+14155550123", "body": "WhatsApp over HTTP"},
    {"channel": "instagram", "to": "6543210987654321", "body": "Instagram over HTTP"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(method: str, url: str, body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for(what: str, condition) -> object:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (URLError, ConnectionError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise Failure(f"gave up waiting for {what}")


class Failure(Exception):
    pass


class Check:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, what: str, ok: bool, evidence: object = "") -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f": {evidence}"), flush=True)
        if not ok:
            self.failures.append(what)


def admin_sql(database_url: str, statement: str) -> None:
    code = (
        "import sys, psycopg\nwith psycopg.connect(sys.argv[1], autocommit=True) as conn: conn.execute(sys.argv[2])\n"
    )
    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    subprocess.run([PYTHON, "-c", code, admin_url, statement], check=True)


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        self.running[name] = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def message(app: str, message_id: int) -> dict:
    status, body = call("GET", f"{app}/api/messages/{message_id}")
    if status != 200 or not isinstance(body, dict):
        raise Failure(f"GET /api/messages/{message_id} answered {status}: {body}")
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-port", type=int, default=0)
    parser.add_argument("--sim-port", type=int, default=0)
    options = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    if not database_url or not database_url.startswith("postgres"):
        print("provider_http_check: DATABASE_URL must point at a PostgreSQL server", file=sys.stderr)
        return 2
    app_port = options.app_port or free_port()
    sim_port = options.sim_port or free_port()
    app, sim = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{sim_port}"
    db_name = f"messaging_http_check_{os.getpid()}"
    log_dir = ROOT / "var" / "provider_http_check"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    env = {
        **os.environ,
        **SECRETS,
        "DATABASE_URL": urlunsplit(urlsplit(database_url)._replace(path="/" + db_name)),
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "PROVIDER_MODE": "http",
        "TWILIO_BASE_URL": sim,
        "SENDGRID_BASE_URL": sim,
        "META_GRAPH_BASE_URL": sim,
        "PUBLIC_BASE_URL": app,
        "WEBHOOK_SIGNATURES_REQUIRED": "true",
        "API_AUTH_REQUIRED": "false",
        "PORT": str(app_port),
        "BIND_ADDRESS": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "RETRY_BASE_DELAY_SECONDS": "1",
        "RETRY_MAX_DELAY_SECONDS": "3",
        "PROVIDER_SIM_CALLBACK_DELAY_MS": "50-1000",
    }
    simulator = [PYTHON, "manage.py", "run_provider_sim", "--port", str(sim_port), "--callback-base-url", app]
    processes = Processes(log_dir)
    check = Check()
    admin_sql(database_url, f"CREATE DATABASE {db_name}")
    try:
        print(f"provider_http_check: service {app}, simulator {sim}, database {db_name}, logs {log_dir}")
        processes.start("simulator", simulator, env)
        processes.start("service", ["bin/start.sh"], env)
        wait_for("the simulator", lambda: call("GET", f"{sim}/health")[0] == 200)
        wait_for("the service", lambda: call("GET", f"{app}/health/ready")[0] == 200)

        print("1. four channels over HTTP, signed status callbacks applied")
        first = []
        for send in SENDS:
            status, body = call("POST", f"{app}/api/messages", send)
            check(f"{send['channel']} answers 201 sent", status == 201 and body["status"] == "sent", (status, body))
            first.append(body)
        # The providers the service says it used (each channel's, from the registry); the simulator's
        # count per provider must match them.
        expected = Counter(body["provider"] for body in first)
        stats = call("GET", f"{sim}/stats")[1]
        counted = {provider: stats[provider]["sends"] for provider in expected}
        check("the simulator counted each send", counted == dict(expected) and len(expected) == 3, stats)
        check("per channel", stats["channels"] == {"sms": 1, "email": 1, "whatsapp": 1, "instagram": 1}, stats)
        for body in first:
            final = wait_for(
                f"message {body['id']} delivered",
                lambda body=body: message(app, body["id"])["status"] == "delivered" and message(app, body["id"]),
            )
            check(f"{body['provider']} {body['provider_message_id']} delivered by its callbacks", bool(final))
        wait_for("every callback posted", lambda: call("GET", f"{sim}/stats")[1]["callbacks"]["pending"] == 0)
        callbacks = call("GET", f"{sim}/stats")[1]["callbacks"]
        check(
            "every signed callback was accepted by the service",
            callbacks["failed"] == 0 and callbacks["delivered"] > 0,
            callbacks,
        )

        print("2. simulator stopped: sends answer 202 pending")
        processes.stop("simulator")
        pending = []
        for send in SENDS:
            status, body = call("POST", f"{app}/api/messages", {**send, "body": send["body"] + " (later)"})
            ok = status == 202 and body["status"] == "pending" and body["error"]["code"] == "connection_refused"
            check(f"{send['channel']} answers 202 pending (connection_refused)", ok, (status, body))
            pending.append(body)

        print("3. simulator back, run_worker delivers each exactly once")
        processes.start("simulator", simulator, env)
        wait_for("the simulator", lambda: call("GET", f"{sim}/health")[0] == 200)
        processes.start("worker", [PYTHON, "manage.py", "run_worker"], env)
        for body in pending:
            final = wait_for(
                f"message {body['id']} delivered",
                lambda body=body: message(app, body["id"])["status"] == "delivered" and message(app, body["id"]),
            )
            check(
                f"{body['type']} message {body['id']} delivered by the worker",
                final["provider"] == first[pending.index(body)]["provider"],  # its channel's provider
                final,
            )
        processes.stop("worker")
        # One more pass of the worker: nothing is due, nothing is sent again.
        subprocess.run(
            [PYTHON, "manage.py", "run_worker", "--once"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        stats = call("GET", f"{sim}/stats")[1]
        counted = {provider: (stats[provider]["sends"], stats[provider]["replays"]) for provider in expected}
        check(
            "the restarted simulator accepted each pending message exactly once (no replays, no resend)",
            counted == {provider: (count, 0) for provider, count in expected.items()},
            stats,
        )
        for body in first:
            check(
                f"message {body['id']} from before the outage is still delivered",
                message(app, body["id"])["status"] == "delivered",
            )
    except Failure as failure:
        check(str(failure), False)
    finally:
        processes.stop_all()
        admin_sql(database_url, f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    if check.failures:
        print(f"provider_http_check: {len(check.failures)} check(s) failed; logs in {log_dir}", file=sys.stderr)
        return 1
    print("provider_http_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
