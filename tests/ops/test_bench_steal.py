"""`make bench` and bench.paired read how much of the machine's CPU time was stolen during each measured
run (the hypervisor did not run its cores while they had work): on these shared virtual machines a
run's throughput and p99 move with it."""

import json
from pathlib import Path

from bench import run as bench_run
from bench.paired import BASELINE, stolen, summarise, targets
from bench.run import Bench, Config, cpu_shares, cpu_times, paired_table, table

#: /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice.
STAT = "cpu  15596 0 3134 34761 643 0 192 1461 0 0\ncpu0 7800 0 1567 17380 321 0 96 730 0 0\n"


def test_the_machines_cpu_time_is_read_by_kind(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    assert cpu_times(stat) == {
        "user": 15596,
        "nice": 0,
        "system": 3134,
        "idle": 34761,
        "iowait": 643,
        "irq": 0,
        "softirq": 192,
        "steal": 1461,
    }
    stat.write_text("intr 1 2 3\n")
    assert cpu_times(stat) is None
    assert cpu_times(tmp_path / "absent") is None  # not Linux


def test_a_runs_shares_are_the_differences_between_two_readings():
    before = {"user": 1000, "nice": 0, "system": 200, "idle": 500, "iowait": 0, "irq": 0, "softirq": 0, "steal": 100}
    # 200 ticks (two cores for a second): 90 busy, 20 idle (waiting on the disk included), 90 stolen.
    after = {"user": 1080, "nice": 0, "system": 210, "idle": 510, "iowait": 10, "irq": 0, "softirq": 0, "steal": 190}

    assert cpu_shares(before, after) == {"busy_pct": 45.0, "idle_pct": 10.0, "steal_pct": 45.0}
    assert cpu_shares(before, before) is None  # no tick between them
    assert cpu_shares(None, after) is None


def test_every_wrk_run_records_the_machines_cpu_shares_during_it(monkeypatch, tmp_path):
    readings = iter(
        [
            {"user": 0, "idle": 0, "steal": 0},
            {"user": 150, "idle": 10, "steal": 40},
        ]
    )
    monkeypatch.setattr(bench_run, "cpu_times", lambda: next(readings))

    def wrk(command, env, what):
        Path(env["BENCH_OUT"]).write_text(json.dumps({"requests": 10, "statuses": {"200": 10}}))
        return ""

    monkeypatch.setattr(bench_run, "run_checked", wrk)
    harness = Bench.__new__(Bench)  # no databases or servers
    harness.config = Config(quick=True)
    harness.work = tmp_path

    result = harness.wrk("http://127.0.0.1:1", "ingest_unique", seconds=1, tag="t")

    assert result["cpu"] == {"busy_pct": 75.0, "idle_pct": 5.0, "steal_pct": 20.0}


def _runs(*shares):
    return [{"rps": 500.0, "p99_ms": 40.0, "non_2xx": 0, "steal_pct": share} for share in shares]


def test_the_paired_rounds_report_the_steal_over_all_their_runs():
    runs = {
        BASELINE: {"ingest_unique": _runs(1.0, 30.0), "send": _runs(2.0, None)},
        "service": {"ingest_unique": _runs(5.0, 45.5), "send": _runs(0.5, 3.0)},
    }
    assert stolen(runs) == {"median_pct": 3.0, "max_pct": 45.5, "runs": 7}  # the unknown one left out
    assert stolen({"service": {"send": _runs(None)}}) is None

    summary = summarise([BASELINE, "service"], ["ingest_unique", "send"], runs)
    paired = {
        "rounds": 2,
        "seconds": 6,
        "summary": summary,
        "targets": targets(summary, "service"),
        "steal": stolen(runs),
        "checks": {"non_2xx": 0, "ok": True},
    }
    printed = paired_table({"results": {"paired": paired}})
    assert "CPU time stolen by the hypervisor in the paired runs: median 3%, highest 45.5%" in printed


def test_the_table_gives_each_measured_runs_steal():
    figures = {
        "rps": 500.0,
        "p50_ms": 20.0,
        "p99_ms": 60.0,
        "non_2xx": 0,
        "checks": {"ok": True},
        "cpu": {"busy_pct": 60.0, "idle_pct": 2.5, "steal_pct": 37.5},
    }
    drain = {"rate": 2500.0, "checks": {"ok": True}, "cpu": {"busy_pct": 90.0, "idle_pct": 8.0, "steal_pct": 2.0}}
    report = {"results": {"ingest_unique": {"baseline": figures}, "drain_0ms_1p": {"service": drain}}}

    heading, ingest, drained, *_ = table(report).splitlines()
    assert heading.split()[-1] == "steal%"
    assert ingest.split()[-1] == "37.5"
    assert drained.split()[-1] == "2"


def test_a_run_names_its_machines_speed_and_the_steal_over_the_whole_run():
    from bench.run import machine_line, python_loop_seconds

    assert 0 < python_loop_seconds(additions=100_000) < 5
    report = {
        "machine": {
            "nproc": 2,
            "cpu": "Intel(R) Xeon(R) Processor",
            "python_loop_seconds": 1.78,
            "cpu_during_run": {"busy_pct": 80.5, "idle_pct": 12.0, "steal_pct": 7.5},
        }
    }
    assert machine_line(report) == (
        "machine: 2 cores (Intel(R) Xeon(R) Processor), ten million additions in a Python loop 1.78 s;"
        " over the whole run 80.5% busy, 12% idle, 7.5% stolen by the hypervisor"
    )
    report["machine"] |= {"cpu": "", "python_loop_seconds": None, "cpu_during_run": None}  # not Linux
    assert machine_line(report) == "machine: 2 cores (unknown CPU)"


def _wrk_result(steal: float) -> dict:
    return {
        "requests": 100,
        "duration_us": 1e6,
        "statuses": {"200": 100},
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "latency_us": {"p50": 20_000, "p90": 30_000, "p99": 45_000, "max": 60_000},
        "answers": [],
        "cpu": {"busy_pct": 100 - steal, "idle_pct": 0.0, "steal_pct": steal},
    }


def test_a_measured_run_and_a_paired_run_keep_the_steal_of_the_measured_run_not_the_warm_ups():
    from bench.paired import _measure

    harness = Bench.__new__(Bench)
    harness.config = Config(quick=True)
    harness.api_key = "key"
    steals = iter([50.0, 12.5])  # the warm-up's, then the measured run's
    harness.wrk = lambda url, mode, **kwargs: _wrk_result(next(steals))

    assert _measure(harness, "http://x", "ingest_unique", seconds=1, tag="t", area="203")["steal_pct"] == 12.5

    steals = iter([50.0, 12.5])
    server = type("Server", (), {"url": "http://x"})()
    assert harness.measure(server, "ingest_unique", "t")["cpu"]["steal_pct"] == 12.5


def test_a_report_gives_the_steal_over_the_whole_run(monkeypatch):
    readings = iter([{"user": 0, "idle": 0, "steal": 0}, {"user": 60, "idle": 30, "steal": 10}])
    monkeypatch.setattr(bench_run, "cpu_times", lambda: next(readings))
    monkeypatch.setattr(bench_run, "machine", lambda: {"nproc": 2})
    harness = Bench.__new__(Bench)
    harness.config = Config(quick=True)
    harness.started = bench_run.datetime.now(bench_run.UTC)
    harness.cpu_at_start = bench_run.cpu_times()
    harness.results = {}

    assert harness.report()["machine"] == {
        "cpu_during_run": {"busy_pct": 60.0, "idle_pct": 30.0, "steal_pct": 10.0},
        "nproc": 2,
    }
