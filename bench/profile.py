"""Where the time of one request goes: the service in-process under cProfile (`make bench` runs it as
the ``profile`` scenario, on a fresh database, with production settings and a 0 ms mock provider).

For an inbound webhook (new id), a duplicate delivery and a send, it reports the wall time per request
without the profiler, SQL statements and Redis commands per request, the profiler's self time by
area (ORM, driver and socket waits, DRF, the rest of Django, the service's own code, ...) and the
top functions. The raw profiles are written beside the run's other files (``*.prof``, for snakeviz
or ``python -m pstats``).

    DJANGO_SETTINGS_MODULE=config.settings.production ... python -m bench.profile --out DIR
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from collections import Counter
from pathlib import Path

AREAS = [
    ("/django/db/", "Django ORM (query building, compiling, model instances)"),
    ("psycopg", "psycopg driver"),
    ("rest_framework", "DRF (parsing, serializers, rendering)"),
    ("/django/", "Django request, middleware, URLs, cache"),
    ("/redis/", "redis-py"),
    ("phonenumbers", "phonenumbers"),
    ("nh3", "nh3"),
]
APPS = ("conversations", "messaging", "webhooks", "core", "providers", "apikeys", "config")
WAITS = ("recv", "send", "select", "poll", "wait", "connect", "sleep", "pq_")


def inbound_body(n: int, event_id: str) -> dict:
    """The scaffold's inbound SMS webhook: the provider's id ``event_id``, from one of 1,000 senders
    (by ``n``) to the business number. The in-process benchmarks' request (bench/instructions.py too)."""
    return {
        "from": f"+1202{2000000 + n % 1000:07d}",
        "to": "+18045551234",
        "type": "sms",
        "messaging_provider_id": event_id,
        "body": f"bench inbound {n}",
        "attachments": None,
        "timestamp": "2026-01-01T00:00:00Z",
    }


def send_body(n: int) -> dict:
    """An SMS send from sender number ``n`` (modulo 10**7) to the business number."""
    return {"from": f"+1206{n % 10**7:07d}", "to": "+18045551234", "body": f"bench send {n}"}


def _area(filename: str, function: str) -> str:
    if filename.endswith("psycopg/connection.py") and function == "wait":
        return "waiting on PostgreSQL (round trips)"
    if filename == "~":
        if any(word in function for word in WAITS):
            return "waiting on sockets (mostly Redis)"
        return "C built-ins"
    for needle, area in AREAS:
        if needle in filename:
            return area
    root = str(Path(__file__).resolve().parent.parent)
    if filename.startswith(root) and filename[len(root) + 1 :].split("/")[0] in APPS:
        return "service code"
    return "Python standard library, other"


class Counters:
    def __init__(self) -> None:
        self.sql = 0
        self.redis = 0
        self.statements: list[str] | None = None  # a list while one request's statements are recorded

    def sql_wrapper(self, execute, sql, params, many, context):
        self.sql += 1
        if self.statements is not None:
            self.statements.append(" ".join(sql.split())[:160])
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--requests", type=int, default=int(os.environ.get("PROFILE_REQUESTS", "150")))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import django

    django.setup()
    import redis
    from django.db import connection
    from django.test import Client

    from apikeys.services import api_key_create

    counters = Counters()
    original = redis.Redis.execute_command

    def counted(self, *a, **kw):
        counters.redis += 1
        return original(self, *a, **kw)

    redis.Redis.execute_command = counted
    # The rate limits, circuit breakers and the mock provider's ledger talk to Redis through the
    # service's own lean connections (core/redis_cache.py), not redis-py's execute_command.
    from core.redis_cache import _LeanConnection

    lean_call = _LeanConnection.call

    def lean_counted(self, *a):
        counters.redis += 1
        return lean_call(self, *a)

    _LeanConnection.call = lean_counted  # type: ignore[method-assign]
    _, key = api_key_create(name="bench-profile")
    client = Client(HTTP_X_FORWARDED_PROTO="https", HTTP_AUTHORIZATION=f"Bearer {key}")

    def inbound(n: int, event: str):
        return client.post("/api/webhooks/sms", inbound_body(n, event), content_type="application/json")

    def send(n: int):
        response = client.post("/api/messages/sms", send_body(2000000 + n), content_type="application/json")
        if response.status_code < 300 and response.json().get("status") != "sent":
            # A 2xx that did not reach the provider (deferred to the outbox) is not the send profiled.
            raise SystemExit(f"bench.profile: a send answered {response.status_code} {response.content[:300]!r}")
        return response

    counter = iter(range(10**9))
    scenarios = {
        "ingest": lambda: inbound(next(counter), f"p-{next(counter)}"),
        "ingest_duplicate": lambda: inbound(7, "p-duplicate"),
        "send_0ms": lambda: send(next(counter)),
    }
    report: dict = {}
    with connection.execute_wrapper(counters.sql_wrapper):
        for name, call in scenarios.items():
            for _ in range(20):  # warm: imports, connection, first conversation
                _check(call())
            counters.statements = []
            _check(call())
            statements, counters.statements = counters.statements, None
            counters.sql = counters.redis = 0
            started = time.perf_counter()
            for _ in range(args.requests):
                _check(call())
            wall = (time.perf_counter() - started) / args.requests
            sql, redis_commands = counters.sql / args.requests, counters.redis / args.requests
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                call()
            profiler.disable()
            profiler.dump_stats(out / f"{name}.prof")
            stats = pstats.Stats(profiler)
            areas: Counter = Counter()
            top = []
            total = 0.0
            for (filename, line, function), (_, calls, tottime, _cumtime, _) in stats.stats.items():
                areas[_area(filename, function)] += tottime
                total += tottime
                top.append((tottime, calls, f"{Path(filename).name}:{line}({function})"))
            top.sort(reverse=True)
            report[name] = {
                "ms_per_request": round(wall * 1000, 2),
                "sql_per_request": round(sql, 1),
                "redis_commands_per_request": round(redis_commands, 1),
                "statements_of_one_request": statements,
                "self_time_share": {area: round(100 * t / total, 1) for area, t in areas.most_common()},
                "top_self_time": [
                    {
                        "function": where,
                        "calls_per_request": round(calls / args.requests, 1),
                        "share": round(100 * t / total, 1),
                    }
                    for t, calls, where in top[:12]
                ],
            }
    report["summary"] = _summary(report)
    print(json.dumps(report))


def _check(response) -> None:
    if not 200 <= response.status_code < 300:
        raise SystemExit(f"bench.profile: {response.status_code} {response.content[:300]!r}")


def _summary(report: dict) -> str:
    lines = ["profile (in-process, one request at a time, 0 ms provider):"]
    for name, figures in report.items():
        areas = ", ".join(f"{area} {share}%" for area, share in list(figures["self_time_share"].items())[:5])
        lines.append(
            f"  {name}: {figures['ms_per_request']} ms/request, {figures['sql_per_request']} SQL, "
            f"{figures['redis_commands_per_request']} Redis; self time: {areas}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
