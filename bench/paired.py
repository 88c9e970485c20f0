"""Paired runs: two variants of the service (or the service and the baseline) side by side, for a
change that a setting switches or one in the code.

Runs minutes apart on these shared machines differ by up to a quarter, more than most changes are
worth, so comparing two `make bench` runs measures the machine. Here both variants run at once, each
the service with a few environment variables of its own (production settings and the mock provider
at 0 ms, as `make bench` runs it; gunicorn 5 x 8; a fresh database copied from one template each),
and wrk alternates between them: each round measures every mode on each variant in turn, after a
one-second warm-up, with the variants' order and the modes' flipped every other round. Only one is
loaded at a time. The report is each run, each variant's median, and the ratio B / A of each round:
the per-round ratios say whether a difference holds up, where the medians alone would not. Each run
also records the share of the machine's CPU time stolen while it ran (``steal_pct``: the hypervisor
did not run the virtual cores while they had work; the report's ``steal`` sums it up): on the
thirty-seventh round's machine a run's throughput fell to less than half in runs with 45% stolen.

    .venv/bin/python -m bench.paired --rounds 6 --seconds 6 --modes ingest_unique,send \\
        off:GUNICORN_KEEPALIVE_LINGER_MS=0 on:GUNICORN_KEEPALIVE_LINGER_MS=5

A variant is ``NAME:VAR=VALUE[,VAR=VALUE...]`` (``NAME:`` alone is the service as configured). For a
change in the code, ``NAME@TREE:...`` serves the variant from another checkout (a ``git worktree`` of
the commit before, say) with this checkout's virtualenv; both trees must hold the same migrations,
since both databases are copied from one migrated here:

    git worktree add ../before HEAD~1
    .venv/bin/python -m bench.paired --modes send before@../before: after:

``--sql NAME=STATEMENTS`` runs SQL on that variant's database before its server starts: the cost of a
part of the schema measured by taking it away (for reading the cost, not for deploying):

    .venv/bin/python -m bench.paired --modes ingest_unique,send \\
        --sql "lean=DROP INDEX message_body_search_idx" full: lean:

``baseline`` alone, as the first variant, is the one-file baseline of `make bench` (bench/baseline.py,
served as ``BENCH_BASELINE_GUNICORN`` says), so the service's ratios to it, which issue 12's targets
are, are read round by round rather than from one run of each minutes apart. The baseline has no send
path: beside each of the service's sends it serves inbound messages, and the send's ratio is to those,
as `make bench`'s ``ratio*`` is. With ``ingest_unique`` among the modes, every mode's ratio to the
baseline's inbound messages of the same round is reported too (``/ ingest_unique``):

    .venv/bin/python -m bench.paired --rounds 10 --seconds 8 --modes ingest_unique,ingest_dup,send \\
        baseline service:

Modes are bench/load.lua's: ``ingest_unique``, ``ingest_dup``, ``send``. The ``BENCH_*`` settings of
docs/PERFORMANCE.md that apply (connections, wrk threads, gunicorn layout, PostgreSQL and Redis) apply
here too. No correctness checks run (`make bench` has them). It writes
``bench/results/<UTC time>-paired.json`` and drops every database it made on the way out.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.run import BENCH, ROOT, Bench, Config, answered, cleanup, gunicorn, log, unanswered

MODES = ("ingest_unique", "ingest_dup", "send")
#: The variant that is the one-file baseline (bench/baseline.py), not the service.
BASELINE = "baseline"
#: Each variant's senders come from an area code of their own, so neither spends the other's rate limits.
SENDER_AREAS = ("203", "205")


def _migrations(tree: Path) -> set[str]:
    return {str(path.relative_to(tree)) for path in tree.glob("*/migrations/[0-9]*.py")}


def _describe(tree: Path) -> str:
    """Which code a variant ran, without naming a path outside this checkout: its commit, and whether
    uncommitted changes were on top of it."""
    where = "this checkout" if tree == ROOT else "another checkout"
    git = ["git", "-C", str(tree)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    changes = " with uncommitted changes" if dirty.stdout.strip() else ""
    return f"{where} at {commit or 'an unknown commit'}{changes}"


def _variant(text: str) -> tuple[str, dict[str, str], Path]:
    if text == BASELINE:
        return BASELINE, {}, ROOT
    label, _, assignments = text.partition(":")
    name, at, tree_text = label.partition("@")
    if not name or not _ or (at and not tree_text):
        raise argparse.ArgumentTypeError(f"{text!r}: a variant is NAME[@TREE]:VAR=VALUE[,VAR=VALUE...] or {BASELINE}")
    if name == BASELINE:
        raise argparse.ArgumentTypeError(f"{text!r}: {BASELINE} is the one-file baseline's name; write it alone")
    tree = Path(tree_text).resolve() if at else ROOT
    if not (tree / "config" / "wsgi.py").is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: {tree} is no checkout of this service (no config/wsgi.py)")
    if _migrations(tree) != _migrations(ROOT):
        raise argparse.ArgumentTypeError(f"{text!r}: {tree} holds other migrations than {ROOT}")
    env = {}
    for assignment in filter(None, assignments.split(",")):
        variable, equals, value = assignment.partition("=")
        if not equals or not variable:
            raise argparse.ArgumentTypeError(f"{assignment!r} in {text!r}: not VAR=VALUE")
        env[variable] = value
    return name, env, tree


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=6, help="each measured wrk run (after a 1-second warm-up)")
    parser.add_argument("--modes", default="ingest_unique,send", help=f"comma-separated: {', '.join(MODES)}")
    parser.add_argument(
        "--sql",
        action="append",
        default=[],
        metavar="NAME=STATEMENTS",
        help="SQL run on variant NAME's database before its server starts (repeatable)",
    )
    parser.add_argument("a", type=_variant, help=f"the reference variant, NAME:VAR=VALUE[,...], or {BASELINE}")
    parser.add_argument("b", type=_variant, help="the variant compared with it")
    arguments = parser.parse_args()
    arguments.modes = [mode for mode in arguments.modes.split(",") if mode]
    unknown = sorted(set(arguments.modes) - set(MODES))
    if unknown or not arguments.modes:
        parser.error(f"modes are {', '.join(MODES)}, not {unknown or 'none'}")
    if arguments.a[0] == arguments.b[0]:
        parser.error("the two variants need different names")
    if arguments.b[0] == BASELINE:
        parser.error(f"{BASELINE} is the reference: name it first")
    if arguments.rounds < 1 or arguments.seconds < 1:
        parser.error("--rounds and --seconds are at least 1")
    sql: dict[str, list[str]] = {}
    for text in arguments.sql:
        name, equals, statements = text.partition("=")
        services = [variant[0] for variant in (arguments.a, arguments.b) if variant[0] != BASELINE]
        if not equals or not statements.strip() or name not in services:
            parser.error(f"--sql {text!r}: NAME=STATEMENTS, NAME one of the service's variants ({', '.join(services)})")
        sql.setdefault(name, []).append(statements)
    arguments.sql = sql
    return arguments


def _measure(bench: Bench, url: str, mode: str, *, seconds: int, tag: str, area: str) -> dict[str, float]:
    extra = {"BENCH_AUTH": f"Bearer {bench.api_key}", "BENCH_SENDER_AREA": area}
    warm_up = bench.wrk(url, mode, seconds=1, tag=f"{tag}-w", extra=extra)
    run = bench.wrk(url, mode, seconds=seconds, tag=tag, extra=extra)
    return {
        "rps": round(answered(run) / (run["duration_us"] / 1e6), 1),
        "p99_ms": round(run["latency_us"]["p99"] / 1000, 2),
        # The machine's CPU time stolen by the hypervisor during the run (None off Linux).
        "steal_pct": run["cpu"]["steal_pct"] if run.get("cpu") else None,
        "non_2xx": unanswered(warm_up) + unanswered(run),  # the warm-up's too, as `make bench` counts them
    }


def _printed(line: str) -> None:
    print(line, flush=True)


def _served_mode(name: str, mode: str) -> str:
    """What variant ``name`` serves in ``mode``'s turn: the baseline, which has no send path, serves
    inbound messages beside the service's sends."""
    return "ingest_unique" if name == BASELINE and mode == "send" else mode


def _ratios(compared: list[dict], reference: list[dict]) -> list[float | None]:
    return [round(b["rps"] / a["rps"], 3) if a["rps"] else None for a, b in zip(reference, compared, strict=True)]


def _median(ratios: list[float | None]) -> float | None:
    known = [ratio for ratio in ratios if ratio is not None]
    return round(statistics.median(known), 3) if known else None


def summarise(variants: list[str], modes: list[str], runs: dict[str, dict[str, list[dict]]]) -> dict:
    reference, compared = variants
    summary = {}
    for mode in modes:
        figures = {
            name: {
                "median_rps": statistics.median(run["rps"] for run in runs[name][mode]),
                "median_p99_ms": statistics.median(run["p99_ms"] for run in runs[name][mode]),
            }
            for name in variants
        }
        ratios = _ratios(runs[compared][mode], runs[reference][mode])
        summary[mode] = figures | {f"{compared}/{reference} per round": ratios, "median ratio": _median(ratios)}
        if reference == BASELINE:
            summary[mode][f"{reference} served"] = _served_mode(reference, mode)
            if "ingest_unique" in modes and mode != "ingest_unique":  # issue 12's: to the round's inbound messages
                to_ingest = _ratios(runs[compared][mode], runs[reference]["ingest_unique"])
                summary[mode][f"{compared}/{reference} ingest_unique per round"] = to_ingest
                summary[mode]["median ratio to ingest_unique"] = _median(to_ingest)
    return summary


#: Issue 12's targets, read off paired rounds against the baseline: each mode's median ratio (the
#: service's requests a second over the baseline's inbound messages of the same round) at least this.
TARGET_RATIOS = {"ingest_unique": 1.0, "ingest_dup": 1.5, "send": 0.8}
#: ... and the service's inbound messages' p99 (the median over the rounds) under this.
TARGET_INGEST_P99_MS = 50.0


def targets(summary: dict, compared: str) -> dict:
    """Each of issue 12's targets in a paired summary (``summarise``) of variant ``compared`` against
    the baseline: the figure, the bound and whether it was met; the modes it lacks are left out."""
    found = {}
    for mode, bound in TARGET_RATIOS.items():
        figures = summary.get(mode)
        if not figures:
            continue
        # A send's is the baseline's inbound messages served beside it; a duplicate's, those of the round.
        key = "median ratio to ingest_unique" if mode == "ingest_dup" else "median ratio"
        ratio = figures.get(key)
        entry = {"ratio": ratio, "at_least": bound, "met": ratio is not None and ratio >= bound}
        if mode == "ingest_unique":
            p99 = figures[compared]["median_p99_ms"]
            entry |= {"p99_ms": p99, "p99_under_ms": TARGET_INGEST_P99_MS}
            entry["met"] = entry["met"] and p99 is not None and p99 < TARGET_INGEST_P99_MS
        found[mode] = entry
    return found


def stolen(runs: dict[str, dict[str, list[dict]]]) -> dict | None:
    """The share of the machine's CPU time stolen (the hypervisor did not run the virtual cores while
    they had work) over every measured run (``measure_rounds``' runs): its median and its highest, in
    percent; None where it is not known. Stolen time lengthens answers, so a run's p99 is read with it."""
    shares = [run["steal_pct"] for run in every_run(runs) if run.get("steal_pct") is not None]
    if not shares:
        return None
    return {"median_pct": round(statistics.median(shares), 1), "max_pct": max(shares), "runs": len(shares)}


def stolen_line(steal: dict) -> str:
    """``stolen``'s figures in words."""
    return (
        f"the machine's CPU time stolen by the hypervisor in the paired runs: median {steal['median_pct']:g}%,"
        f" highest {steal['max_pct']:g}%"
    )


def every_run(runs: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """``measure_rounds``' runs, every variant's and mode's, in one list."""
    return [run for variant in runs.values() for mode in variant.values() for run in mode]


def serve_baseline(bench: Bench, servers: ExitStack, name: str = BASELINE) -> str:
    """Starts the one-file baseline on a fresh database of its own; its URL. Stopped, and the database
    dropped, with ``servers``."""
    db = bench.fresh("baseline", "paired")
    servers.callback(bench.dbs.drop, db)  # once its server has stopped
    log(f"variant {name}: bench/baseline.py, gunicorn {bench.config.baseline_gunicorn}")
    server = servers.enter_context(
        gunicorn(
            bench.config,
            app="bench.baseline:application",
            env=bench.baseline_env(db),
            log_path=bench.work / f"{name}.log",
            ready_path="/api/conversations",
        )
    )
    return server.url


def serve_service(
    bench: Bench,
    servers: ExitStack,
    name: str,
    *,
    extra_env: dict[str, str] | None = None,
    tree: Path = ROOT,
    statements: list[str] | None = None,
) -> str:
    """Starts the service (``tree``'s code, ``extra_env`` over `make bench`'s settings) on a fresh
    database of its own, after running ``statements`` there; its URL. Stopped, and the database
    dropped, with ``servers``."""
    extra_env = extra_env or {}
    db = bench.fresh("service", f"paired_{name}")
    servers.callback(bench.dbs.drop, db)  # once its server has stopped
    for sql in statements or []:
        log(f"variant {name}: on its database, {sql}")
        bench.dbs.execute(db, sql)
    env = bench.service_env(db) | extra_env
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree)  # bench.run.base_environment's is this checkout
    settings = ", ".join(f"{k}={v}" for k, v in extra_env.items()) or "as configured"
    log(f"variant {name}: {settings}" + (f" (the code of {tree})" if tree != ROOT else ""))
    server = servers.enter_context(
        gunicorn(
            bench.config,
            app="config.wsgi:application",
            env=env,
            log_path=bench.work / f"{name}.log",
            ready_path="/healthz",
            cwd=tree,
        )
    )
    return server.url


def measure_rounds(
    bench: Bench,
    urls: dict[str, str],
    modes: list[str],
    *,
    rounds: int,
    seconds: int,
    report: Callable[[str], None] = _printed,
) -> dict[str, dict[str, list[dict]]]:
    """``rounds`` rounds, each measuring every mode on every variant in turn (``urls``' order first),
    one at a time; each variant's runs per mode, in round order. Each run's line goes to ``report``."""
    names = list(urls)
    runs: dict[str, dict[str, list[dict]]] = {name: {mode: [] for mode in modes} for name in names}
    for round_number in range(rounds):
        # Both the variants' and the modes' order flip every other round, so neither a variant nor
        # a mode is always measured first (the ratios across modes compare positions in a round).
        order = names if round_number % 2 == 0 else names[::-1]
        ordered_modes = modes if round_number % 2 == 0 else modes[::-1]
        for mode in ordered_modes:
            for name in order:
                served = _served_mode(name, mode)
                figures = _measure(
                    bench,
                    urls[name],
                    served,
                    seconds=seconds,
                    tag=f"{name}-{mode}-{round_number}",
                    area=SENDER_AREAS[names.index(name)],
                )
                served_note = ""
                if served != mode:  # the baseline's inbound messages in a send's turn
                    figures["served"] = served
                    served_note = f" ({served})"
                runs[name][mode].append(figures)
                steal = figures.get("steal_pct")
                report(
                    f"round {round_number}  {mode:14} {name:10} {figures['rps']:8.1f} req/s{served_note}"
                    f"  p99 {figures['p99_ms']:7.1f} ms  non-2xx {figures['non_2xx']}"
                    + (f"  steal {steal:g}%" if steal is not None else "")
                )
    return runs


def main() -> int:
    arguments = _arguments()
    config = Config()
    variants = {name: env for name, env, _ in (arguments.a, arguments.b)}
    trees = {name: tree for name, _, tree in (arguments.a, arguments.b)}
    names = list(variants)

    def interrupted(signum, frame):
        raise SystemExit(f"bench.paired: {signal.Signals(signum).name}, cleaning up")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        bench = Bench(config)
        bench.prepare()
        bench.flush_redis()
        with ExitStack() as servers:
            urls = {}
            for name, extra_env in variants.items():
                if name == BASELINE:
                    urls[name] = serve_baseline(bench, servers)
                else:
                    urls[name] = serve_service(
                        bench,
                        servers,
                        name,
                        extra_env=extra_env,
                        tree=trees[name],
                        statements=arguments.sql.get(name, []),
                    )
            runs = measure_rounds(bench, urls, arguments.modes, rounds=arguments.rounds, seconds=arguments.seconds)
        summary = summarise(names, arguments.modes, runs)
        report = {
            "started": bench.started.isoformat(timespec="seconds"),
            "variants": variants,
            "sql": arguments.sql,
            "trees": {name: _describe(tree) for name, tree in trees.items()},
            "rounds": arguments.rounds,
            "seconds": arguments.seconds,
            "connections": config.connections,
            "gunicorn": f"gthread {config.workers} x {config.threads}",
            "baseline_gunicorn": config.baseline_gunicorn if BASELINE in variants else None,
            "runs": runs,
            "summary": summary,
            "steal": stolen(runs),
        }
        path = BENCH / "results" / f"{bench.stamp}-paired.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        for mode, figures in summary.items():
            for name in names:
                print(
                    f"{mode:14} {name:10} median {figures[name]['median_rps']:8.1f} req/s"
                    f"  p99 median {figures[name]['median_p99_ms']:7.1f} ms"
                )
            ratios = figures[f"{names[1]}/{names[0]} per round"]
            print(f"{mode:14} {names[1]}/{names[0]} per round {ratios}, median {figures['median ratio']}")
            to_ingest = figures.get(f"{names[1]}/{names[0]} ingest_unique per round")
            if to_ingest is not None:
                median = figures["median ratio to ingest_unique"]
                print(f"{mode:14} {names[1]}/{names[0]} ingest_unique per round {to_ingest}, median {median}")
        if report["steal"]:
            print(stolen_line(report["steal"]))
        log(f"results: {path.relative_to(BENCH.parent)}")
        return 0
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
