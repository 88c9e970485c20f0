"""`make bench`: the service and a minimal Django + DRF baseline, side by side, under the same load.

Each scenario gets a fresh PostgreSQL database (copied from a migrated template), its own gunicorn
(gthread, the same processes x threads for both), a short warm-up and a measured wrk run; write
scenarios are then checked against the database (every 2xx answer has its row, nothing duplicated,
counters exact). Results go to bench/results/<UTC time>.json and .png and a table on stdout; every
database, server and worker it started is gone when it exits (normally, on error or on Ctrl-C).

Settings (environment): see docs/PERFORMANCE.md. The ones used most:
    BENCH_DURATION=15  BENCH_CONNECTIONS=16  BENCH_SCENARIOS=ingest_unique,send_0ms  BENCH_QUICK=1
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from config.gunicorn import (
    active_processes,
    active_requests,
    active_wait,
    balanced_accepts,
    cores,
    keepalive_linger,
    switch_interval,
)
from core.startup import gc_freeze_enabled
from providers.http import simulator_environment
from providers.simulator.state import APIS as SIMULATED_APIS

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
PYSPY = str(ROOT / ".venv" / "bin" / "py-spy")


def base_environment() -> dict[str, str]:
    """The caller's environment without any BENCH_ or DJANGO_ setting or webhook signing secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "DJANGO_"))}
    for name in ("TWILIO_AUTH_TOKEN", "SENDGRID_WEBHOOK_VERIFICATION_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def service_environment(*, database_url: str, redis_url: str, secret_key: str, latency: str = "0") -> dict[str, str]:
    """How the service runs in every benchmark (docs/PERFORMANCE.md, "How the service runs")."""
    env = base_environment()
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secret_key,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        # wrk's LuaJIT cannot compute Twilio's HMAC-SHA1 per request: signatures are off, and
        # stated so in docs/PERFORMANCE.md. API keys stay required (the production default).
        WEBHOOK_SIGNATURES_REQUIRED="false",
        API_AUTH_REQUIRED="true",
        PROVIDER_MODE="mock",  # the in-process mock, whatever the caller's environment says
        MOCK_PROVIDER_LATENCY_MS=latency,
    )
    return env


SCENARIOS = [
    "ingest_unique",
    "ingest_dup",
    "send_0ms",
    "send_slow",
    "send_async",
    "paired",
    "list",
    "thread",
    "drain_0ms_1p",
    "drain_0ms_3p",
    "drain_slow_1p",
    "drain_slow_3p",
    "drain_http_0ms_1p",
    "drain_http_0ms_3p",
    "drain_http_slow_1p",
    "drain_http_slow_3p",
    "profile",
]
SLOW_LATENCY = "100-500"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@dataclass
class Config:
    quick: bool = os.environ.get("BENCH_QUICK", "") not in ("", "0", "false")
    duration: int = 0
    warmup: int = 0
    connections: int = _env_int("BENCH_CONNECTIONS", 16)
    wrk_threads: int = _env_int("BENCH_WRK_THREADS", 2)
    workers: int = _env_int("BENCH_WORKERS", 5)
    threads: int = _env_int("BENCH_THREADS", 8)
    conversations: int = 0
    per_conversation: int = _env_int("BENCH_PER_CONVERSATION", 10)
    drain_fast: int = 0
    drain_slow: int = 0
    paired_rounds: int = 0
    paired_seconds: int = 0
    scenarios: list[str] = field(default_factory=list)
    pg_url: str = os.environ.get(
        "BENCH_PG_URL", "postgresql://messaging_user:messaging_password@127.0.0.1:5432"
    ).rstrip("/")
    redis_url: str = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
    port_base: int = _env_int("BENCH_PORT_BASE", 0)
    pyspy: bool = os.environ.get("BENCH_PYSPY", "1") not in ("", "0", "false")
    senders: int = _env_int("BENCH_SENDERS", 1000)
    # "project": the baseline reads gunicorn.conf.py as the service does (the same worker class, the
    # same freeze); "plain": gunicorn's own gthread without them, as a baseline outside this project runs.
    baseline_gunicorn: str = os.environ.get("BENCH_BASELINE_GUNICORN", "project")

    def __post_init__(self) -> None:
        self.duration = _env_int("BENCH_DURATION", 3 if self.quick else 15)
        self.warmup = _env_int("BENCH_WARMUP", 1 if self.quick else 2)
        self.conversations = _env_int("BENCH_CONVERSATIONS", 10_000 if self.quick else 100_000)
        self.drain_fast = _env_int("BENCH_DRAIN_MESSAGES", 300 if self.quick else 2000)
        self.drain_slow = _env_int("BENCH_DRAIN_SLOW_MESSAGES", 60 if self.quick else 300)
        self.paired_rounds = _env_int("BENCH_PAIRED_ROUNDS", 2 if self.quick else 5)
        self.paired_seconds = _env_int("BENCH_PAIRED_SECONDS", 2 if self.quick else 6)
        wanted = os.environ.get("BENCH_SCENARIOS", "").replace(" ", "")
        self.scenarios = [s for s in wanted.split(",") if s] if wanted else list(SCENARIOS)
        unknown = sorted(set(self.scenarios) - set(SCENARIOS))
        if unknown:
            sys.exit(f"bench: unknown scenario(s) {unknown}; choose from {SCENARIOS}")
        if "paired" in self.scenarios and (self.paired_rounds < 1 or self.paired_seconds < 1):
            sys.exit("bench: BENCH_PAIRED_ROUNDS and BENCH_PAIRED_SECONDS are at least 1")
        if self.baseline_gunicorn not in ("project", "plain"):
            sys.exit(f"bench: BENCH_BASELINE_GUNICORN is project or plain, not {self.baseline_gunicorn!r}")


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Cleanup:
    """Everything started or created, undone in reverse order at exit, whatever the exit."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, object]] = []

    def push(self, name: str, action) -> None:
        self.actions.append((name, action))

    def remove(self, action) -> None:
        self.actions = [(n, a) for n, a in self.actions if a is not action]

    def run(self) -> None:
        while self.actions:
            name, action = self.actions.pop()
            try:
                action()
            except Exception as exc:  # keep undoing the rest
                log(f"cleanup {name}: {exc}")


cleanup = Cleanup()


# --- databases ---------------------------------------------------------------------------------


class Databases:
    def __init__(self, config: Config, stamp: str) -> None:
        self.config = config
        # BENCH_DB_PREFIX: several benchmarks on one PostgreSQL server keep to their own names.
        self.prefix = f"{os.environ.get('BENCH_DB_PREFIX', 'ms_bench')}_{stamp}_{os.getpid()}"
        self.admin = psycopg.connect(f"{config.pg_url}/postgres", autocommit=True)
        cleanup.push("admin connection", self.admin.close)

    def url(self, name: str) -> str:
        return f"{self.config.pg_url}/{name}"

    def create(self, suffix: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        self.admin.execute(sql)
        cleanup.push(f"drop {name}", lambda: self.drop(name))
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def query(self, name: str, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url(name)) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, name: str, statements: str) -> None:
        """Runs ``statements`` (one or more, ``;``-separated, no parameters) on database ``name`` in
        autocommit: several in one string run as one implicit transaction, a single one on its own."""
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            conn.execute(statements)


# --- processes ---------------------------------------------------------------------------------


def free_port(config: Config, taken: set[int]) -> int:
    candidates = range(config.port_base, config.port_base + 50) if config.port_base else [0] * 20
    for candidate in candidates:
        if candidate in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise SystemExit("bench: no free port")


_PORTS: set[int] = set()


@dataclass
class Server:
    url: str
    pid: int  # gunicorn's master; its workers are its children


def stop_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group (gunicorn finishes requests in flight), SIGKILL what is left."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def _serving(
    what: str, command: list[str], *, port: int, env: dict, cwd: Path, log_path: Path, ready_url: str, grace: float
):
    """Runs a server in its own process group, logging to ``log_path``, until the block ends; yields
    it once ``ready_url`` answers. Stopped (and ``port`` given back) however the block ends."""
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    stopper = lambda: stop_group(process, grace=grace)  # noqa: E731
    cleanup.push(what, stopper)
    try:
        _wait_ready(ready_url, process, log_path)
        yield process
    finally:
        stopper()
        cleanup.remove(stopper)
        _PORTS.discard(port)


@contextmanager
def gunicorn(config: Config, *, app: str, env: dict, log_path: Path, ready_path: str, cwd: Path = ROOT):
    port = free_port(config, _PORTS)
    command = [
        GUNICORN,
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        "--worker-class",
        "gthread",
        "--workers",
        str(config.workers),
        "--threads",
        str(config.threads),
        "--timeout",
        "30",
        "--graceful-timeout",
        "20",
        "--error-logfile",
        "-",
    ]
    url = f"http://127.0.0.1:{port}"
    with _serving(
        f"gunicorn {app}", command, port=port, env=env, cwd=cwd, log_path=log_path, ready_url=url + ready_path, grace=20
    ) as process:
        yield Server(url=url, pid=process.pid)


@contextmanager
def provider_simulator(config: Config, *, env: dict, latency: str, log_path: Path):
    """The provider simulator (docs/PROVIDER_SIMULATOR.md) on a free port, without status callbacks
    (no web server runs during a drain); yields its base URL and ``env`` with what points the
    service's HTTP mode at it (the simulator reads the same variables, credentials included)."""
    port = free_port(config, _PORTS)
    url = f"http://127.0.0.1:{port}"
    env = env | simulator_environment(url)
    command = [PY, "manage.py", "run_provider_sim", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--latency-ms", latency, "--no-callbacks"]
    with _serving(
        "provider simulator",
        command,
        port=port,
        env=env,
        cwd=ROOT,
        log_path=log_path,
        ready_url=url + "/stats",
        grace=5,
    ):
        yield url, env


def _simulator_counts(url: str) -> dict:
    """The simulator's own count of provider sends and idempotent replays, over all its APIs."""
    with urllib.request.urlopen(url + "/stats", timeout=10) as answer:
        stats = json.load(answer)
    return {
        "available": True,
        "source": "provider simulator /stats",
        "sends": sum(stats[api]["sends"] for api in SIMULATED_APIS),
        "replays": sum(stats[api]["replays"] for api in SIMULATED_APIS),
    }


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: server exited with {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"bench: server not ready after 60 s; see {log_path}")


def run_checked(command: list[str], env: dict, what: str) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench: {what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- the two projects ----------------------------------------------------------------------------


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = datetime.now(UTC)
        self.cpu_at_start = cpu_times()
        self.stamp = self.started.strftime("%Y%m%dT%H%M%SZ")
        self.out = BENCH / "results"
        self.work = self.out / f"{self.stamp}.d"  # wrk outputs and server logs of this run
        self.work.mkdir(parents=True, exist_ok=True)
        self.dbs = Databases(config, self.stamp.lower())
        self.results: dict[str, dict] = {}
        self.api_key = ""
        self.service_template = ""
        self.baseline_template = ""

    # environments

    def service_env(self, db: str, latency: str = "0") -> dict:
        return service_environment(
            database_url=self.dbs.url(db), redis_url=self.config.redis_url, secret_key=self.secret_key, latency=latency
        )

    def baseline_env(self, db: str) -> dict:
        env = base_environment()
        env["DATABASE_URL"] = self.dbs.url(db)
        if self.config.baseline_gunicorn == "plain":
            # config/gunicorn.py; 5 ms is Python's own switch interval
            env.update(GUNICORN_BALANCED_ACCEPT="false", GC_FREEZE="false", GUNICORN_SWITCH_INTERVAL_MS="5")
            env.update(GUNICORN_ACTIVE_REQUESTS="0", GUNICORN_ACTIVE_PROCESSES="0")
        return env

    def manage(self, db: str, *args: str, latency: str = "0") -> str:
        return run_checked([PY, "manage.py", *args], self.service_env(db, latency), f"manage.py {args[0]}")

    def ops(self, env: dict, *args: str) -> dict:
        # Seeding a million rows is one statement: the production settings' bounds on a statement's
        # time (server- and client-side, DB_STATEMENT_TIMEOUT and DB_QUERY_TIMEOUT) are lifted for it.
        env = {**env, "DB_STATEMENT_TIMEOUT": "0", "DB_QUERY_TIMEOUT": "0"}
        return json.loads(run_checked([PY, "-m", "bench.ops", *args], env, f"bench.ops {args[0]}").strip())

    # set-up

    def prepare(self) -> None:
        self.secret_key = secrets.token_urlsafe(64)
        started = time.monotonic()
        self.service_template = self.dbs.create("svc_tpl")
        self.manage(self.service_template, "migrate", "--noinput")
        output = self.manage(self.service_template, "create_api_key", "bench")
        self.api_key = output.split()[-1]
        self.baseline_template = self.dbs.create("base_tpl")
        run_checked([PY, "-m", "bench.baseline", "create-schema"], self.baseline_env(self.baseline_template), "schema")
        log(f"templates ready in {time.monotonic() - started:.1f} s")

    def fresh(self, kind: str, suffix: str) -> str:
        template = self.service_template if kind == "service" else self.baseline_template
        return self.dbs.create(f"{kind[:4]}_{suffix}", template)

    def flush_redis(self) -> None:
        import redis  # the service's own dependency

        client = redis.Redis.from_url(self.config.redis_url)
        client.flushdb()
        client.close()

    # load

    def wrk(
        self, url: str, mode: str, *, seconds: int, tag: str, extra: dict | None = None, connections: int = 0
    ) -> dict:
        out = self.work / f"{tag}.json"
        threads = 1 if connections == 1 else self.config.wrk_threads
        env = {
            **os.environ,
            "BENCH_MODE": mode,
            "BENCH_TAG": tag,
            "BENCH_OUT": str(out),
            "BENCH_WRK_THREADS": str(threads),
            "BENCH_SENDERS": str(self.config.senders),
            **(extra or {}),
        }
        command = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections or self.config.connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "load.lua"),
            url,
        ]
        before = cpu_times()
        run_checked(command, env, f"wrk {mode}")
        result = json.loads(out.read_text())
        result["cpu"] = cpu_shares(before, cpu_times())
        ids_path = Path(str(out) + ".ids")
        result["answers"] = ids_path.read_text().split("\n")[:-1] if ids_path.exists() else []
        return result

    def measure(self, server: Server, mode: str, name: str, extra: dict | None = None, profile: bool = False) -> dict:
        """A warm-up run, the measured run, then (``profile``, py-spy installed) a shorter run with py-spy
        sampling the gunicorn workers, so the profiler's own CPU never weighs on a reported figure.
        Only the measured run's timings are reported; every run's answers go to the checks."""
        url = server.url
        runs = [self.wrk(url, mode, seconds=self.config.warmup, tag=f"{name}-w", extra=extra)]
        run = self.wrk(url, mode, seconds=self.config.duration, tag=f"{name}-m", extra=extra)
        runs.append(run)
        pyspy = None
        spy_seconds = max(3, self.config.duration // 2)
        spy = self.start_pyspy(server, name, spy_seconds) if profile else None
        if spy:
            runs.append(self.wrk(url, mode, seconds=spy_seconds, tag=f"{name}-p", extra=extra))
            pyspy = self.finish_pyspy(spy)
        seconds = run["duration_us"] / 1e6
        ok = answered(run)
        lat = run["latency_us"]
        statuses = _merge(runs)
        socket_errors = {k: sum(r["socket_errors"][k] for r in runs) for k in run["socket_errors"]}
        return {
            "requests": run["requests"],
            "seconds": round(seconds, 2),
            "rps": round(ok / seconds, 1),
            "p50_ms": round(lat["p50"] / 1000, 2),
            "p90_ms": round(lat["p90"] / 1000, 2),
            "p99_ms": round(lat["p99"] / 1000, 2),
            "max_ms": round(lat["max"] / 1000, 2),
            "cpu": run["cpu"],  # the machine's, during the measured run
            "wrk_runs": len(runs),
            "statuses": statuses,
            "non_2xx": sum(unanswered(r) for r in runs),
            "socket_errors": socket_errors,
            "_answers": [answer for r in runs for answer in r["answers"]],
        } | ({"pyspy": pyspy} if pyspy else {})

    def start_pyspy(self, server: Server, name: str, seconds: int):
        if not self.config.pyspy or not Path(PYSPY).exists():
            return None
        out = self.work / f"{name}.pyspy"
        # --gil: only samples holding the GIL, i.e. Python running on a CPU (waits on PostgreSQL and Redis
        # release it); the in-process profile (bench/profile.py) shows the waits.
        command = [PYSPY, "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking", "--gil"]
        command += ["--rate", "100"]
        command += ["--duration", str(seconds), "--format", "raw", "--output", str(out)]
        log_file = open(self.work / f"{name}.pyspy.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        stopper = lambda: stop_group(process, grace=5)  # noqa: E731
        cleanup.push("py-spy", stopper)
        return process, stopper, out

    def finish_pyspy(self, spy) -> dict | None:
        from bench.pyspy import summarize

        process, stopper, out = spy
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_group(process, grace=5)
        cleanup.remove(stopper)
        if not out.exists():
            log(f"py-spy wrote nothing; see {out}.log")
            return None
        return {"file": str(out.relative_to(ROOT))} | summarize(out)

    # scenarios

    def ingest(self, dup: bool) -> None:
        name = "ingest_dup" if dup else "ingest_unique"
        mode = name
        for kind in ("baseline", "service"):
            db = self.fresh(kind, name)
            if kind == "service":
                env, app, ready = self.service_env(db), "config.wsgi:application", "/healthz"
                auth = {"BENCH_AUTH": f"Bearer {self.api_key}"}
            else:
                env, app, ready = self.baseline_env(db), "bench.baseline:application", "/api/conversations"
                auth = {}
            log(f"{name}: {kind}")
            with gunicorn(
                self.config, app=app, env=env, log_path=self.work / f"{kind}.log", ready_path=ready
            ) as server:
                figures = self.measure(server, mode, f"{kind}-{name}", auth, profile=kind == "service")
            figures["checks"] = self.check_ingest(kind, db, figures.pop("_answers"), figures)
            self.results.setdefault(name, {})[kind] = figures
            self.dbs.drop(db)

    def check_ingest(self, kind: str, db: str, answers: list[str], figures: dict) -> dict:
        answered = {line.split(" ")[0] for line in answers}
        words: dict[str, int] = {}
        for line in answers:
            word = line.split(" ")[-1]
            words[word] = words.get(word, 0) + 1
        table = "baseline_message" if kind == "baseline" else "messaging_message"
        where = "" if kind == "baseline" else "WHERE direction = 'inbound'"
        rows = self.dbs.query(db, f"SELECT provider_message_id FROM {table} {where}")
        ids = [row[0] for row in rows]
        stored = set(ids)
        checks = {
            "answers_2xx": len(answers),
            "answer_words": words,
            "distinct_ids_answered": len(answered),
            "rows": len(ids),
            "duplicated_rows": len(ids) - len(stored),
            "lost_rows": len(answered - stored),
            "rows_without_answer": len(stored - answered),
        }
        if kind == "service":
            ((events, counted, conversations),) = self.dbs.query(
                db,
                "SELECT (SELECT count(*) FROM webhooks_webhookevent WHERE kind = 'inbound' AND outcome = 'processed'),"
                " (SELECT coalesce(sum(message_count), 0) FROM conversations_conversation),"
                " (SELECT count(*) FROM conversations_conversation)",
            )
            checks.update(processed_events=events, conversation_message_count_sum=counted, conversations=conversations)
            checks["counters_exact"] = events == len(ids) == counted
        checks["ok"] = self._verdict(checks, figures)
        return checks

    def _verdict(self, checks: dict, figures: dict) -> bool:
        # A request in flight when wrk stops is finished by the server but never answered to wrk:
        # at most one per connection per wrk run (warm-up, measured and profiled runs).
        in_flight_allowance = figures["wrk_runs"] * self.config.connections
        return (
            figures["non_2xx"] == 0
            and checks["duplicated_rows"] == 0
            and checks["lost_rows"] == 0
            and checks["rows_without_answer"] <= in_flight_allowance
            and checks.get("counters_exact", True)
            and checks.get("exactly_once", True)
        )

    def send(self, latency: str, name: str) -> None:
        db = self.fresh("service", name)
        self.flush_redis()
        log(f"{name}: service (provider latency {latency} ms)")
        env = self.service_env(db, latency)
        area = {"send_0ms": "203", "send_slow": "205", "send_async": "207"}.get(name, "203")
        extra = {"BENCH_AUTH": f"Bearer {self.api_key}", "BENCH_SENDER_AREA": area}
        if name == "send_async":
            # Stored pending and answered 202 at once; no worker runs, so nothing is sent in the run.
            extra["BENCH_PREFER"] = "respond-async"
        with gunicorn(
            self.config,
            app="config.wsgi:application",
            env=env,
            log_path=self.work / "service.log",
            ready_path="/healthz",
        ) as server:
            figures = self.measure(server, "send", f"service-{name}", extra, profile=name == "send_0ms")
        answers = figures.pop("_answers")
        answered = {line.split(" ")[0] for line in answers}
        words: dict[str, int] = {}
        for line in answers:
            words[line.split(" ")[-1]] = words.get(line.split(" ")[-1], 0) + 1
        rows = self.dbs.query(db, "SELECT id::text, status FROM messaging_message WHERE direction = 'outbound'")
        stored = {row[0] for row in rows}
        by_status: dict[str, int] = {}
        for _, status in rows:
            by_status[status] = by_status.get(status, 0) + 1
        ((counted,),) = self.dbs.query(db, "SELECT coalesce(sum(message_count), 0) FROM conversations_conversation")
        mock = self.ops(self.service_env(db, latency), "mock-counts")
        checks = {
            "answers_2xx": len(answers),
            "answer_words": words,
            "rows": len(rows),
            "rows_by_status": by_status,
            "duplicated_rows": len(answers) - len(answered),
            "lost_rows": len(answered - stored),
            "rows_without_answer": len(stored - answered),
            "conversation_message_count_sum": counted,
            "counters_exact": counted == len(rows),
            "provider": mock,
        }
        if mock.get("available"):
            # Every sent row was sent by the provider once, and nothing else was.
            checks["exactly_once"] = mock["sends"] == by_status.get("sent", 0) and mock["replays"] == 0
        checks["ok"] = self._verdict(checks, figures)
        figures["checks"] = checks
        self.results[name] = {"service": figures}
        self.dbs.drop(db)

    def paired(self) -> None:
        """Issue 12's ratios read round by round: the baseline and the service served at once, wrk
        alternating between them (bench/paired.py), so both fall into the same spells of the machine."""
        from bench.paired import (
            BASELINE,
            MODES,
            every_run,
            measure_rounds,
            serve_baseline,
            serve_service,
            stolen,
            summarise,
            targets,
        )

        rounds, seconds = self.config.paired_rounds, self.config.paired_seconds
        log(f"paired: the baseline and the service, {rounds} rounds of {seconds} s per mode")
        self.flush_redis()
        modes = list(MODES)
        with ExitStack() as servers:
            urls = {BASELINE: serve_baseline(self, servers), "service": serve_service(self, servers, "service")}
            runs = measure_rounds(self, urls, modes, rounds=rounds, seconds=seconds, report=log)
        summary = summarise([BASELINE, "service"], modes, runs)
        non_2xx = sum(run["non_2xx"] for run in every_run(runs))
        self.results["paired"] = {
            "rounds": rounds,
            "seconds": seconds,
            "summary": summary,
            "targets": targets(summary, "service"),
            "runs": runs,
            "steal": stolen(runs),
            "checks": {"non_2xx": non_2xx, "ok": non_2xx == 0},
        }

    def reads(self, names: list[str]) -> None:
        for kind in ("baseline", "service"):
            db = self.fresh(kind, "reads")
            if kind == "service":
                env, app, ready = self.service_env(db), "config.wsgi:application", "/healthz"
                extra = {"BENCH_AUTH": f"Bearer {self.api_key}"}
                seed = self.ops(env, "seed-inbox", str(self.config.conversations), str(self.config.per_conversation))
            else:
                env, app, ready = self.baseline_env(db), "bench.baseline:application", "/api/conversations"
                extra = {}
                seed = self.ops(
                    env, "--baseline", "seed-inbox", str(self.config.conversations), str(self.config.per_conversation)
                )
            log(
                f"reads: {kind} seeded {seed['conversations']} conversations, {seed['messages']} messages "
                f"in {seed['seconds']} s"
            )
            extra.update(
                BENCH_FIRST_ID=str(seed["first_conversation_id"]), BENCH_LAST_ID=str(seed["last_conversation_id"])
            )
            with gunicorn(
                self.config, app=app, env=env, log_path=self.work / f"{kind}.log", ready_path=ready
            ) as server:
                for name in names:
                    log(f"{name}: {kind}")
                    figures = self.measure(server, name, f"{kind}-{name}", extra)
                    figures.pop("_answers")
                    # One connection: the page's own cost, without queueing behind 15 others.
                    alone = self.wrk(
                        server.url,
                        name,
                        seconds=max(2, self.config.duration // 3),
                        tag=f"{kind}-{name}-1c",
                        extra=extra,
                        connections=1,
                    )
                    figures["one_connection"] = {
                        "rps": round(alone["requests"] / (alone["duration_us"] / 1e6), 1),
                        "p50_ms": round(alone["latency_us"]["p50"] / 1000, 2),
                        "p99_ms": round(alone["latency_us"]["p99"] / 1000, 2),
                    }
                    one_ok = unanswered(alone) == 0
                    figures["seed"] = seed
                    figures["checks"] = {"ok": figures["non_2xx"] == 0 and one_ok}
                    self.results.setdefault(name, {})[kind] = figures
            self.dbs.drop(db)

    def drain(self, name: str, latency: str, processes: int, messages: int, *, http: bool = False) -> None:
        """Seeds ``messages`` pending sends and times ``processes`` workers draining them, through the
        in-process mock provider or, with ``http``, over HTTP to the provider simulator at ``latency``."""
        db = self.fresh("service", name)
        self.flush_redis()
        env = self.service_env(db, latency)
        if http:
            log_path = self.work / f"{name}-sim.log"
            with provider_simulator(self.config, env=env, latency=latency, log_path=log_path) as (url, http_env):
                simulator_counts = functools.partial(_simulator_counts, url)
                self._drain(
                    name, db, http_env, latency, processes, messages, "http (provider simulator)", simulator_counts
                )
        else:
            mock_counts = functools.partial(self.ops, env, "mock-counts")
            self._drain(name, db, env, latency, processes, messages, "mock (in process)", mock_counts)
        self.dbs.drop(db)

    def _drain(
        self,
        name: str,
        db: str,
        env: dict,
        latency: str,
        processes: int,
        messages: int,
        mode: str,
        counts: Callable[[], dict],
    ) -> None:
        lead = 4.0 + processes  # time for the workers to start before the messages fall due
        seed = self.ops(env, "seed-outbox", str(messages), "--due-in", str(lead))
        due_at = seed["due_at_epoch"]
        log(f"{name}: {messages} pending, {processes} worker process(es), provider latency {latency} ms")
        workers = []
        for index in range(processes):
            log_file = open(self.work / f"{name}-worker{index}.log", "wb")  # noqa: SIM115
            process = subprocess.Popen(
                [PY, "manage.py", "run_worker", "--once", "--due-within", str(lead + 5)],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log_file.close()
            stopper = lambda p=process: stop_group(p, grace=5)  # noqa: E731
            cleanup.push(f"worker {index}", stopper)
            workers.append((process, stopper))
        budget = lead + 30 + messages * (0.5 if latency != "0" else 0.05) / processes
        deadline = time.monotonic() + budget
        # The machine's CPU time from the messages falling due (the workers started by then) to their exit.
        time.sleep(max(0.0, due_at - time.time()))
        before = cpu_times()
        for process, stopper in workers:
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name}: a worker was still running after {budget:.0f} s; stopping it")
            stop_group(process, grace=10)
            cleanup.remove(stopper)
        cpu = cpu_shares(before, cpu_times())
        ((sent, pending, failed, attempts, _first, last),) = self.dbs.query(
            db,
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'pending'),"
            " count(*) FILTER (WHERE status = 'failed'), coalesce(sum(attempts), 0),"
            " extract(epoch FROM min(updated_at) FILTER (WHERE status = 'sent')),"
            " extract(epoch FROM max(updated_at) FILTER (WHERE status = 'sent'))"
            " FROM messaging_message WHERE direction = 'outbound'",
        )
        provider = counts()
        seconds = float(last) - due_at if last is not None else None
        checks = {
            "seeded": messages,
            "sent": sent,
            "pending": pending,
            "failed": failed,
            "attempts": int(attempts),
            "provider": provider,
            "exactly_once": (not provider.get("available")) or (provider["sends"] == sent and provider["replays"] == 0),
        }
        checks["ok"] = sent == messages and checks["exactly_once"] and int(attempts) == messages
        self.results[name] = {
            "service": {
                "provider_mode": mode,
                "processes": processes,
                "latency_ms": latency,
                "messages": messages,
                "seconds": round(seconds, 2) if seconds else None,
                "rate": round(sent / seconds, 1) if seconds and seconds > 0 else None,
                "rate_per_process": round(sent / seconds / processes, 1) if seconds and seconds > 0 else None,
                "cpu": cpu,
                "checks": checks,
            }
        }

    def profile(self) -> None:
        db = self.fresh("service", "profile")
        # A circuit breaker a drain before left open (the same provider names, the same Redis database)
        # would turn the profiled sends into deferred retries.
        self.flush_redis()
        env = self.service_env(db)
        env["ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"
        log("profile: in-process cProfile of ingest and send (0 ms)")
        output = run_checked([PY, "-m", "bench.profile", "--out", str(self.work / "profile")], env, "bench.profile")
        self.results["profile"] = json.loads(output)
        self.dbs.drop(db)

    # the run

    def run(self) -> dict:
        self.prepare()
        wanted = self.config.scenarios
        for name in wanted:
            if name in ("ingest_unique", "ingest_dup"):
                self.ingest(dup=name == "ingest_dup")
            elif name == "send_0ms":
                self.send("0", name)
            elif name in ("send_slow", "send_async"):
                self.send(SLOW_LATENCY, name)
            elif name.startswith("drain_"):
                # drain_[http_]{0ms,slow}_{1,3}p
                *mode, speed, processes = name.split("_")[1:]
                slow = speed == "slow"
                self.drain(
                    name,
                    SLOW_LATENCY if slow else "0",
                    int(processes.removesuffix("p")),
                    self.config.drain_slow if slow else self.config.drain_fast,
                    http=mode == ["http"],
                )
            elif name == "profile":
                self.profile()
            elif name == "paired":
                self.paired()
        reads = [name for name in ("list", "thread") if name in wanted]
        if reads:
            self.reads(reads)
        return self.report()

    def report(self) -> dict:
        reference = self.results.get("ingest_unique", {}).get("baseline", {}).get("rps")
        for name, targets in self.results.items():
            service = targets.get("service")
            if not service or "rps" not in service:
                continue
            same = targets.get("baseline", {}).get("rps")
            if same:
                service["ratio_same_scenario"] = round(service["rps"] / same, 2)
            if reference and name.startswith(("ingest", "send")):
                service["ratio_to_baseline_ingest"] = round(service["rps"] / reference, 2)
        return {
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            # Read before machine()'s timed loop, which is not part of the run.
            "machine": {"cpu_during_run": cpu_shares(self.cpu_at_start, cpu_times())} | machine(),
            "config": {k: v for k, v in self.config.__dict__.items() if k not in ("pg_url", "redis_url", "scenarios")}
            | {
                "scenarios": self.config.scenarios,
                "gunicorn": f"gthread {self.config.workers} x {self.config.threads}"
                + (
                    f", balanced accepts, {keepalive_linger() * 1000:g} ms keep-alive wait on the answering thread"
                    if balanced_accepts()
                    else ", gunicorn's own gthread"
                )  # gunicorn.conf.py
                + (", start-up objects frozen" if gc_freeze_enabled() else ", no gc.freeze()")  # core/startup.py
                + f", {switch_interval() * 1000:g} ms switch interval"
                + _turns(self.config.workers, self.config.threads)  # core/admission.py
                + _standby(self.config.workers, self.config.threads),  # core/gunicorn_worker.py
                # The drains' workers take it from the environment (docs/OPERATIONS.md, "Delivery threads").
                "worker_first_threads": os.environ.get("WORKER_FIRST_THREADS", "default"),
            },
            "results": self.results,
        }


def _turns(workers: int, threads: int) -> str:
    slots = active_requests(workers=workers, threads=threads, cores=cores())
    if not slots:
        return ", requests of a process at once"
    return f", {slots} request(s) of a process at a time, each waiting at most {active_wait() * 1000:g} ms"


def _standby(workers: int, threads: int) -> str:
    active = active_processes(workers=workers, threads=threads, cores=cores()) if balanced_accepts() else 0
    return f", the {active} youngest processes take new connections first" if active else ""


def answered(run: dict) -> int:
    """The 2xx answers of one wrk run (``Bench.wrk``)."""
    return sum(count for status, count in run["statuses"].items() if 200 <= int(status) < 300)


def unanswered(run: dict) -> int:
    """What the checks count as non-2xx in one wrk run: every answer that was not 2xx and every socket
    error (connect, read, write, timeout)."""
    failed = sum(count for status, count in run["statuses"].items() if not 200 <= int(status) < 300)
    return failed + sum(run["socket_errors"].values())


def _merge(runs: list[dict]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for part in runs:
        for k, v in part["statuses"].items():
            merged[int(k)] = merged.get(int(k), 0) + v
    return merged


#: The columns of /proc/stat's ``cpu`` line (proc(5)) this harness reads: the machine's CPU time by kind,
#: in clock ticks since boot. ``guest`` time is counted in ``user`` already, so it is left out.
CPU_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times(stat: Path = Path("/proc/stat")) -> dict[str, int] | None:
    """The CPU time all the machine's cores have spent so far, by kind, or None where there is no
    /proc/stat (not Linux)."""
    try:
        line = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not line or line[0] != "cpu":
        return None
    return {name: int(value) for name, value in zip(CPU_COLUMNS, line[1:], strict=False)}


def cpu_shares(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, float] | None:
    """How the machine's CPU time between two ``cpu_times`` readings was spent, in percent: ``steal`` is
    the time the hypervisor did not run the virtual cores while they had work (it ran something else:
    other guests, or its own), ``idle`` includes waiting on the disk, ``busy`` is the rest (this
    machine's own work)."""
    if not before or not after:
        return None
    spent = {name: after[name] - before[name] for name in before if name in after}
    total = sum(spent.values())
    if total <= 0:
        return None
    idle = spent.get("idle", 0) + spent.get("iowait", 0)
    steal = spent.get("steal", 0)
    return {
        "busy_pct": round(100 * (total - idle - steal) / total, 1),
        "idle_pct": round(100 * idle / total, 1),
        "steal_pct": round(100 * steal / total, 1),
    }


def machine() -> dict:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python_loop_seconds": python_loop_seconds(),
        "memory": memory,
        "loadavg_at_end": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "postgres": "",
        "wrk": (wrk.stdout or wrk.stderr).split("\n")[0],
        "kernel": platform.release(),
    }


def python_loop_seconds(additions: int = 10_000_000) -> float:
    """Seconds one core takes for ``additions`` additions in a Python loop (the best of three): how
    fast this machine runs the interpreter, so runs on different machines can be told apart (machines
    of the same kind have taken from under half a second to about two here). Taken at the end of a
    run, with its servers stopped; wall-clock time, so time stolen by the hypervisor meanwhile counts."""
    # At a module's top level, as `python3 -c` runs it and as the rounds in PERFORMANCE.md timed it:
    # its names are globals, slower than a function's locals.
    loop = compile(f"total = 0\nfor number in range({additions:d}):\n    total += number\n", "<loop>", "exec")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        exec(loop, {})
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def machine_line(report: dict) -> str:
    """One line on the machine the run measured: cores, interpreter speed, CPU time stolen over the run."""
    found = report["machine"]
    line = f"machine: {found['nproc']} cores ({found['cpu'] or 'unknown CPU'})"
    if found.get("python_loop_seconds") is not None:
        line += f", ten million additions in a Python loop {found['python_loop_seconds']:g} s"
    during = found.get("cpu_during_run")
    if during:
        line += (
            f"; over the whole run {during['busy_pct']:g}% busy, {during['idle_pct']:g}% idle,"
            f" {during['steal_pct']:g}% stolen by the hypervisor"
        )
    return line


def table(report: dict) -> str:
    lines = [
        f"{'scenario':<18} {'target':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio*':>7} {'same':>6} "
        f"{'non2xx':>6} {'rows ok':>7} {'steal%':>6}",
    ]
    for name, targets in report["results"].items():
        if name == "profile":
            continue
        for kind in ("baseline", "service"):
            figures = targets.get(kind)
            if not figures:
                continue
            if "rate" in figures:
                lines.append(
                    f"{name:<18} {kind:<9} {figures['rate'] or 0:>9} {'msg/s':>8} {'':>8} {'':>7} {'':>6} "
                    f"{'':>6} {figures['checks']['ok']!s:>7} {_steal(figures):>6}"
                )
                continue
            lines.append(
                f"{name:<18} {kind:<9} {figures['rps']:>9} {figures['p50_ms']:>8} {figures['p99_ms']:>8} "
                f"{figures.get('ratio_to_baseline_ingest', ''):>7} {figures.get('ratio_same_scenario', ''):>6} "
                f"{figures['non_2xx']:>6} {figures['checks']['ok']!s:>7} {_steal(figures):>6}"
            )
    for name in ("list", "thread"):
        for kind in ("baseline", "service"):
            alone = report["results"].get(name, {}).get(kind, {}).get("one_connection")
            if alone:
                lines.append(f"{name:<18} {kind:<9} one connection: {alone['rps']} req/s, p50 {alone['p50_ms']} ms")
    lines.append("ratio*: service req/s / baseline ingest_unique req/s; same: / baseline in the same scenario")
    lines.append(
        "steal%: the machine's CPU time stolen by the hypervisor during the measured run (a drain: from the"
        " messages falling due to the workers' exit)"
    )
    return "\n".join(lines)


def _steal(figures: dict) -> str:
    cpu = figures.get("cpu")
    return f"{cpu['steal_pct']:g}" if cpu else ""


def paired_table(report: dict) -> str:
    """The paired rounds (``paired``): each mode's medians, its ratio round by round, and its target."""
    paired = report["results"].get("paired")
    if not paired:
        return ""
    lines = [
        f"paired: the baseline and the service at once, {paired['rounds']} rounds of {paired['seconds']} s per mode "
        "(medians over the rounds)"
    ]
    for mode, figures in paired["summary"].items():
        target = paired["targets"].get(mode, {})
        key = "service/baseline ingest_unique per round" if mode == "ingest_dup" else "service/baseline per round"
        ratios = ", ".join(f"{ratio:g}" for ratio in figures[key] if ratio is not None)
        bound = f">= {target['at_least']:g}x" + (
            f", p99 < {target['p99_under_ms']:g} ms" if "p99_under_ms" in target else ""
        )
        served = figures.get("baseline served", mode)
        baseline = f"baseline {figures['baseline']['median_rps']:8.1f} req/s" + (
            f" ({served})" if served != mode else ""
        )
        service = (
            f"service {figures['service']['median_rps']:8.1f} req/s, p99 {figures['service']['median_p99_ms']:.1f} ms"
        )
        verdict = "met" if target.get("met") else "MISSED"
        lines.append(
            f"  {mode:<14} {baseline}, {service}; ratio {target.get('ratio')} (rounds: {ratios}); "
            f"target {bound}: {verdict}"
        )
    lines.append(f"  non-2xx answers and socket errors in the paired rounds: {paired['checks']['non_2xx']}")
    if paired.get("steal"):
        from bench.paired import stolen_line

        lines.append(f"  {stolen_line(paired['steal'])}")
    lines.append(
        "  ratio: the service's req/s over the baseline's inbound messages of the same round (beside each send, the"
        " baseline serves inbound messages)"
    )
    return "\n".join(lines)


def failed_checks(report: dict) -> dict[str, dict]:
    """Every correctness check that failed, by scenario (and project), with what it read."""
    failed = {}
    for name, entry in report["results"].items():
        if not isinstance(entry, dict):
            continue
        if not entry.get("checks", {}).get("ok", True):  # a scenario checked as a whole (paired)
            failed[name] = entry["checks"]
        for kind, figures in entry.items():
            if isinstance(figures, dict) and "checks" in figures and not figures["checks"].get("ok", True):
                failed[f"{name}/{kind}"] = figures["checks"]
    return failed


def pyspy_summary(report: dict) -> str:
    lines = ["py-spy (gunicorn workers under wrk, CPU samples):"]
    for name, targets in report["results"].items():
        spy = targets.get("service", {}).get("pyspy") if isinstance(targets, dict) else None
        if not spy or not spy.get("samples"):
            continue
        areas = ", ".join(f"{a} {p}%" for a, p in list(spy["self_share_by_area"].items())[:5])
        functions = ", ".join(f"{f} {p}%" for f, p in list(spy["service_functions_inclusive_share"].items())[:5])
        lines.append(f"  {name}: {spy['samples']} samples; innermost frame: {areas}")
        lines.append(f"  {name}: service functions on the stack: {functions}")
    return "\n".join(lines) if len(lines) > 1 else ""


def main() -> int:
    config = Config()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk not found (bin/bench.sh installs it with apt-get)")

    def interrupted(signum, frame):
        raise SystemExit(f"bench: {signal.Signals(signum).name}, cleaning up")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        bench = Bench(config)
        report = bench.run()
        report["machine"]["postgres"] = bench.dbs.admin.execute("SHOW server_version").fetchone()[0]
        path = BENCH / "results" / f"{bench.stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(machine_line(report))
        print(table(report))
        if "paired" in report["results"]:
            print(paired_table(report))
        if "profile" in report["results"]:
            print(report["results"]["profile"].get("summary", ""))
        print(pyspy_summary(report))
        try:
            from bench.plot import NothingToPlot, plot

            png = plot(report, path.with_suffix(".png"))
            log(f"plot: {png.relative_to(ROOT)}")
        except ImportError as exc:
            log(f"no plot ({exc}); pip install -r requirements-bench.txt")
        except NothingToPlot as exc:
            log(f"no plot ({exc})")
        log(f"results: {path.relative_to(ROOT)} (raw wrk output and logs in {bench.work.relative_to(ROOT)})")
        failed = failed_checks(report)
        if failed:
            log(f"CHECKS FAILED: {', '.join(failed)}")
            for name, checks in failed.items():  # what each check read, so the reason shows here
                log(f"  {name}: {json.dumps(checks)}")
            return 1
        return 0
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
