"""PostgreSQL's own CPU time per inbound-webhook statement: what the server spends on a new message and
on a duplicate, apart from the service's Python and from the machine's other load.

    DATABASE_URL=postgresql://.../a_migrated_database REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.server_time [--statements 1000] [--sets 3]

It sends one inbound webhook of each kind through Django's WSGI handler (production settings, as
bench/instructions.py does), keeps the statement and parameters the service ran, and runs each again
``--statements`` times on a connection of its own, prepared, as the service runs it: a new message
with a new provider id each time, a duplicate with the same one. Each execution is timed by the
server process's CPU clock (``/proc/<pid>/schedstat``: nanoseconds on a CPU, whatever else runs), so
the server must run on this machine. It prints microseconds per statement for each of ``--sets``
sets: they agree to about 2-3% where wall-clock timings on a shared 2-core machine swing by a
quarter. The rows stay in the database. docs/PERFORMANCE.md (eighteenth round) has what it found.

With ``--requests`` it times whole requests instead, each kind's CPU by process: ``--count`` requests
of each of ``--scenarios`` (``ingest``, ``duplicate``, ``send``: an inbound message, the same
duplicate each time, a send through the 0 ms mock provider) through the WSGI handler, one at a time,
and per request the CPU time of the PostgreSQL backend that served them and of the Redis server
(``process_id`` of its ``INFO``; null when no ``redis-server`` process of that id runs here, as for
a server in a container or on another host), the CPU time of the thread that made them (the
service's Python, the drivers and the log line it writes, formatted and written to /dev/null), and
the wall time. The clocks leave out what the other processes on the machine do, except Redis's,
which counts every client of that server: run it with nothing else using Redis. The database
connection must persist between requests (``DB_CONN_MAX_AGE`` above 0, as the bench's settings
have it). It prints a line per set on stderr and a JSON report on stdout (when it started, the
count, the sets, whether rate limits were on, and each scenario's sets); the rows and an API key
stay in the database. docs/PERFORMANCE.md (thirty-eighth round) has what it found:

    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m bench.server_time --requests \\
        [--scenarios ingest,duplicate,send] [--count 2000] [--sets 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.instructions import SCENARIOS


def _service_requests() -> dict[str, Callable[[], None]]:
    """This process made the service as `make bench` runs it (bench.instructions' environment), and a
    callable per scenario making one request of it through the WSGI handler."""
    from bench.instructions import _environment, _requests

    os.environ.update(_environment())
    return _requests()


def _captured() -> dict[str, tuple[str, list[Any]]]:
    """The statement and parameters of one new inbound message and of one duplicate, as run."""
    requests = _service_requests()
    from django.db import connection

    captured: list[tuple[str, list[Any]]] = []

    def keep(execute, sql, params, many, context):
        captured.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    statements = {}
    for scenario in ("ingest", "duplicate"):
        requests[scenario]()  # the connection knows its statements; a duplicate's original is stored
        captured.clear()
        with connection.execute_wrapper(keep):
            requests[scenario]()
        if len(captured) != 1:
            raise SystemExit(f"bench.server_time: a {scenario} ran {len(captured)} statements, not one")
        statements[scenario] = captured[0]
    return statements


PROC = Path("/proc")


def _cpu_ns(pid: int, server: str = "the PostgreSQL server") -> int:
    try:
        return int((PROC / str(pid) / "schedstat").read_text().split()[0])
    except FileNotFoundError:
        raise SystemExit(f"bench.server_time: {server} must run on this machine (no process {pid} here)") from None


def _local_process(pid: int, name: str, proc: Path = PROC) -> bool:
    """Whether process ``pid`` runs on this machine as ``name`` (its ``comm``): a server in a container
    or on another host gives a process id of its own, which here is another process or none."""
    try:
        return (proc / str(pid) / "comm").read_text().strip() == name
    except OSError:
        return False


def _run(conn: Any, sql: str, params: list[Any], count: int, *, new_ids: bool) -> float:
    """Microseconds of the server's CPU per execution, over ``count`` executions; with ``new_ids``
    each under a provider id of its own (a new message), else all under the captured one."""
    event_id = next(value for value in params if isinstance(value, str) and value.startswith("instructions-"))
    pid = conn.info.backend_pid
    spent = 0
    for _ in range(count):
        values = params
        if new_ids:
            new_id = f"server-time-{secrets.token_hex(8)}"
            values = [new_id if value == event_id else value for value in params]
        before = _cpu_ns(pid)
        conn.execute(sql, values)
        spent += _cpu_ns(pid) - before
    return spent / count / 1000


def _redis_pid(client: Any, proc: Path = PROC) -> int | None:
    """The process id of the Redis server behind ``client``, when that process runs on this machine."""
    pid = int(client.info("server")["process_id"])
    return pid if _local_process(pid, "redis-server", proc) else None


def _per_request(
    request: Callable[[], None],
    count: int,
    *,
    backend_pid: Callable[[], int],
    redis_pid: int | None,
    cpu_ns: Callable[[int, str], int] = _cpu_ns,
) -> dict[str, float | None]:
    """Microseconds per request of ``count`` calls of ``request``: the PostgreSQL backend's CPU, the
    Redis server's (None without ``redis_pid``), this thread's CPU and the wall time."""
    pid = backend_pid()
    servers = {"postgresql_us": (pid, "the PostgreSQL server")}
    if redis_pid is not None:
        servers["redis_us"] = (redis_pid, "the Redis server")
    before = {figure: cpu_ns(*server) for figure, server in servers.items()}
    thread, wall = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(count):
        request()
    wall, thread = time.perf_counter_ns() - wall, time.thread_time_ns() - thread
    if backend_pid() != pid:
        raise SystemExit("bench.server_time: the database connection changed during a set (run fewer --count)")
    spent = {figure: cpu_ns(*server) - before[figure] for figure, server in servers.items()}

    def us(ns: int) -> float:
        return round(ns / count / 1000, 1)

    return {
        "postgresql_us": us(spent["postgresql_us"]),
        "redis_us": us(spent["redis_us"]) if "redis_us" in spent else None,
        "thread_us": us(thread),
        "wall_us": us(wall),
    }


def _log_to_nowhere(loggers: Iterable[logging.Logger] | None = None) -> None:
    """The log lines of ``loggers`` (every configured one by default; the service writes one a request)
    still formatted and written, but to /dev/null rather than over this report."""
    if loggers is None:
        configured = logging.Logger.manager.loggerDict.values()
        loggers = [logging.getLogger(), *(each for each in configured if isinstance(each, logging.Logger))]
    nowhere = open(os.devnull, "w")  # noqa: SIM115 (open for the rest of the process)
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setStream(nowhere)


def _requests_report(scenarios: list[str], count: int, sets: int) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    requests = _service_requests()
    _log_to_nowhere()
    from django.conf import settings
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache
    from django.db import connection

    def backend_pid() -> int:
        if connection.connection is None:
            raise SystemExit(
                "bench.server_time: --requests needs a database connection kept between requests (DB_CONN_MAX_AGE > 0)"
            )
        return int(connection.connection.info.backend_pid)

    requests[scenarios[0]]()  # the connection open
    if not _local_process(backend_pid(), "postgres"):
        raise SystemExit("bench.server_time: the PostgreSQL server must run on this machine")
    counter = caches[settings.RATELIMIT_USE_CACHE]  # the mock provider's ledger is on the same server
    redis_pid = _redis_pid(counter._cache.get_client(None, write=True)) if isinstance(counter, RedisCache) else None
    report: dict[str, list[dict[str, float | None]]] = {}
    for scenario in scenarios:
        for _ in range(100):  # prepared, planned, warm; a duplicate's original stored
            requests[scenario]()
        report[scenario] = [
            _per_request(requests[scenario], count, backend_pid=backend_pid, redis_pid=redis_pid) for _ in range(sets)
        ]
        for each in report[scenario]:
            print(
                f"{scenario}: PostgreSQL {each['postgresql_us']} us, Redis {each['redis_us']} us, this thread "
                f"{each['thread_us']} us of CPU, {each['wall_us']} us of wall time per request",
                file=sys.stderr,
            )
    return {
        "started": started,
        "count": count,
        "sets": sets,
        "rate_limits": bool(settings.RATELIMIT_ENABLE),
        "scenarios": report,
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _scenarios(text: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"name one or more of {', '.join(SCENARIOS)}" + (f"; not {', '.join(unknown)}" if unknown else "")
        )
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=_positive, default=1000, help="executions per set")
    parser.add_argument("--sets", type=_positive, default=3)
    parser.add_argument("--requests", action="store_true", help="whole requests instead: each kind's CPU by process")
    parser.add_argument("--scenarios", type=_scenarios, default=list(SCENARIOS), help="with --requests")
    parser.add_argument("--count", type=_positive, default=2000, help="with --requests: requests per set")
    args = parser.parse_args()
    if args.requests:
        print(json.dumps(_requests_report(args.scenarios, args.count, args.sets)))
        return
    statements = _captured()

    import psycopg

    report: dict[str, list[float]] = {}
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=0) as conn:
        for scenario, (sql, params) in statements.items():
            new_ids = scenario == "ingest"
            _run(conn, sql, params, 50, new_ids=new_ids)  # prepared, planned, warm
            report[scenario] = [
                round(_run(conn, sql, params, args.statements, new_ids=new_ids), 1) for _ in range(args.sets)
            ]
            sets = ", ".join(f"{value:.1f}" for value in report[scenario])
            print(f"{scenario}: {sets} us of PostgreSQL CPU per statement", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
