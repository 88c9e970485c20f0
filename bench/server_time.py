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
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any


def _captured() -> dict[str, tuple[str, list[Any]]]:
    """The statement and parameters of one new inbound message and of one duplicate, as run."""
    from bench.instructions import _environment, _requests

    os.environ.update(_environment())
    requests = _requests()
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


def _cpu_ns(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except FileNotFoundError:
        raise SystemExit("bench.server_time: the PostgreSQL server must run on this machine") from None


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=1000, help="executions per set")
    parser.add_argument("--sets", type=int, default=3)
    args = parser.parse_args()
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
