"""bench.paired against the one-file baseline: the ratios issue 12's targets name, read round by round."""

import argparse

import pytest

from bench.paired import BASELINE, _arguments, _served_mode, _variant, summarise, targets


def _runs(*rates: float) -> list[dict]:
    return [{"rps": rate, "p99_ms": 10.0, "non_2xx": 0} for rate in rates]


def test_baseline_is_a_variant_written_alone():
    assert _variant("baseline") == (BASELINE, {}, _variant("service:")[2])
    with pytest.raises(argparse.ArgumentTypeError, match="write it alone"):
        _variant("baseline:GC_FREEZE=false")


def test_the_baseline_serves_inbound_messages_in_a_sends_turn():
    assert _served_mode(BASELINE, "send") == "ingest_unique"
    assert _served_mode(BASELINE, "ingest_dup") == "ingest_dup"
    assert _served_mode("service", "send") == "send"


def test_each_mode_is_read_against_the_baselines_inbound_messages_of_its_round():
    runs = {
        BASELINE: {
            "ingest_unique": _runs(500, 800),
            "ingest_dup": _runs(450, 700),
            "send": _runs(400, 600),  # its inbound messages, served beside the service's sends
        },
        "service": {"ingest_unique": _runs(750, 1000), "ingest_dup": _runs(900, 1200), "send": _runs(400, 540)},
    }
    summary = summarise([BASELINE, "service"], ["ingest_unique", "ingest_dup", "send"], runs)

    assert summary["ingest_unique"]["service/baseline per round"] == [1.5, 1.25]
    assert "service/baseline ingest_unique per round" not in summary["ingest_unique"]  # the same figures
    assert summary["ingest_dup"]["service/baseline per round"] == [2.0, 1.714]
    assert summary["ingest_dup"]["service/baseline ingest_unique per round"] == [1.8, 1.5]
    assert summary["ingest_dup"]["median ratio to ingest_unique"] == 1.65
    assert summary["send"]["baseline served"] == "ingest_unique"
    assert summary["send"]["service/baseline per round"] == [1.0, 0.9]
    assert summary["send"]["service/baseline ingest_unique per round"] == [0.8, 0.675]


def test_two_service_variants_get_no_baseline_figures():
    runs = {name: {"send": _runs(400, 600)} for name in ("before", "after")}
    summary = summarise(["before", "after"], ["send"], runs)

    assert summary["send"]["after/before per round"] == [1.0, 1.0]
    assert set(summary["send"]) == {"before", "after", "after/before per round", "median ratio"}


@pytest.mark.parametrize(
    "argv",
    [
        ["service:", "baseline"],  # the baseline is the reference
        ["--sql", "baseline=SELECT 1", "baseline", "service:"],  # its database is not the service's
    ],
)
def test_the_baseline_is_only_ever_the_reference(monkeypatch, argv):
    monkeypatch.setattr("sys.argv", ["bench.paired", *argv])
    with pytest.raises(SystemExit):
        _arguments()


def _make_bench_summary(*, ingest: tuple, dup: tuple, send: tuple, p99: float = 30.0) -> dict:
    """A paired summary as `make bench`'s paired scenario builds it: (baseline, service) rates per round."""
    baseline_ingest, service_ingest = ingest
    runs = {
        BASELINE: {
            "ingest_unique": _runs(*baseline_ingest),
            "ingest_dup": _runs(*dup[0]),
            "send": _runs(*send[0]),
        },
        "service": {
            "ingest_unique": [{"rps": rate, "p99_ms": p99, "non_2xx": 0} for rate in service_ingest],
            "ingest_dup": _runs(*dup[1]),
            "send": _runs(*send[1]),
        },
    }
    return summarise([BASELINE, "service"], ["ingest_unique", "ingest_dup", "send"], runs)


def test_targets_are_read_off_the_round_by_round_medians():
    summary = _make_bench_summary(
        ingest=((500, 600, 700), (600, 720, 700)),  # 1.2, 1.2, 1.0
        dup=((400, 400, 400), (800, 900, 1000)),  # of the round's inbound messages: 1.6, 1.5, 1.429
        # Beside the baseline's inbound messages served in the send's turn: 0.8, 0.84, 1.0 (of those of
        # the round's ingest_unique turn: 0.96, 0.7, 1.0).
        send=((600, 500, 700), (480, 420, 700)),
    )
    found = targets(summary, "service")

    assert found["ingest_unique"] == {
        "ratio": 1.2,
        "at_least": 1.0,
        "met": True,
        "p99_ms": 30.0,
        "p99_under_ms": 50.0,
    }
    assert found["ingest_dup"] == {"ratio": 1.5, "at_least": 1.5, "met": True}
    assert found["send"] == {"ratio": 0.84, "at_least": 0.8, "met": True}


def test_a_target_is_missed_by_its_ratio_or_the_ingests_p99():
    summary = _make_bench_summary(
        ingest=((500, 500), (700, 700)),
        dup=((400, 400), (700, 700)),  # 1.4 of the round's inbound messages, though 1.75 of the duplicates
        send=((520, 520), (390, 390)),  # 0.75 of the inbound messages beside them, 0.78 of the round's
        p99=55.0,
    )
    found = targets(summary, "service")

    assert found["ingest_unique"]["ratio"] == 1.4
    assert found["ingest_unique"]["met"] is False  # p99 55 ms
    assert found["ingest_dup"]["met"] is False
    assert found["send"] == {"ratio": 0.75, "at_least": 0.8, "met": False}


def test_make_bench_prints_the_paired_rounds_and_fails_on_a_non_2xx_answer():
    from bench.run import failed_checks, paired_table

    summary = _make_bench_summary(
        ingest=((500, 600), (700, 780)), dup=((400, 400), (800, 900)), send=((450, 700), (405, 490))
    )
    paired = {
        "rounds": 2,
        "seconds": 6,
        "summary": summary,
        "targets": targets(summary, "service"),
        "checks": {"non_2xx": 0, "ok": True},
    }
    report = {"results": {"paired": paired, "ingest_unique": {"service": {"checks": {"ok": True}}}}}

    heading, *lines, _ = paired_table(report).splitlines()
    assert "2 rounds of 6 s" in heading
    by_mode = {line.split()[0]: line for line in lines}
    assert "ratio 1.35 (rounds: 1.4, 1.3); target >= 1x, p99 < 50 ms: met" in by_mode["ingest_unique"]
    assert "ratio 1.55 (rounds: 1.6, 1.5); target >= 1.5x: met" in by_mode["ingest_dup"]
    assert "baseline    575.0 req/s (ingest_unique)" in by_mode["send"]  # served beside the sends
    assert "ratio 0.8 (rounds: 0.9, 0.7); target >= 0.8x: met" in by_mode["send"]
    assert failed_checks(report) == {}

    paired["checks"] = {"non_2xx": 3, "ok": False}
    assert failed_checks(report) == {"paired": {"non_2xx": 3, "ok": False}}


def test_make_bench_runs_the_paired_rounds_by_default_and_records_what_they_read(monkeypatch):
    import bench.paired
    from bench.run import SCENARIOS, Bench, Config

    assert "paired" in SCENARIOS
    monkeypatch.delenv("BENCH_SCENARIOS", raising=False)
    for name in ("BENCH_PAIRED_ROUNDS", "BENCH_PAIRED_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    assert "paired" in Config(quick=False).scenarios
    assert (Config(quick=False).paired_rounds, Config(quick=False).paired_seconds) == (5, 6)
    assert (Config(quick=True).paired_rounds, Config(quick=True).paired_seconds) == (2, 2)

    events: list[str] = []
    measured: dict = {}

    def serve(name):
        def start(bench, servers, *args, **kwargs):
            events.append(f"{name} started")
            servers.callback(events.append, f"{name} stopped")
            return f"http://{name}"

        return start

    def measure(bench, urls, modes, *, rounds, seconds, report):
        measured.update(urls=urls, modes=modes, rounds=rounds, seconds=seconds)
        events.append("measured")
        runs = {
            BASELINE: {"ingest_unique": _runs(500), "ingest_dup": _runs(400), "send": _runs(500)},
            "service": {"ingest_unique": _runs(700), "ingest_dup": _runs(800), "send": _runs(450)},
        }
        runs["service"]["send"][0]["non_2xx"] = 2
        runs["service"]["ingest_unique"][0]["steal_pct"] = 40.0  # the others' is not known
        return runs

    monkeypatch.setattr(bench.paired, "serve_baseline", serve("baseline"))
    monkeypatch.setattr(bench.paired, "serve_service", serve("service"))
    monkeypatch.setattr(bench.paired, "measure_rounds", measure)
    harness = Bench.__new__(Bench)  # no databases or servers: the parts above stand in for them
    harness.config = Config(quick=False)
    harness.results = {}
    monkeypatch.setattr(harness, "flush_redis", lambda: events.append("redis flushed"))

    harness.paired()

    assert events == [
        "redis flushed",
        "baseline started",
        "service started",
        "measured",
        "service stopped",
        "baseline stopped",
    ]
    assert measured == {
        "urls": {BASELINE: "http://baseline", "service": "http://service"},
        "modes": ["ingest_unique", "ingest_dup", "send"],
        "rounds": 5,
        "seconds": 6,
    }
    paired = harness.results["paired"]
    assert (paired["rounds"], paired["seconds"]) == (5, 6)
    assert paired["targets"]["ingest_dup"]["ratio"] == 1.6
    assert paired["targets"]["send"] == {"ratio": 0.9, "at_least": 0.8, "met": True}
    assert paired["checks"] == {"non_2xx": 2, "ok": False}
    assert paired["steal"] == {"median_pct": 40.0, "max_pct": 40.0, "runs": 1}


def test_the_paired_rounds_settings_are_checked_only_when_they_run(monkeypatch):
    from bench.run import Config

    monkeypatch.setenv("BENCH_PAIRED_ROUNDS", "0")
    monkeypatch.setenv("BENCH_SCENARIOS", "ingest_unique")
    assert Config(quick=False).paired_rounds == 0  # bench.paired's own runs read no such setting
    monkeypatch.setenv("BENCH_SCENARIOS", "ingest_unique,paired")
    with pytest.raises(SystemExit, match="BENCH_PAIRED_ROUNDS"):
        Config(quick=False)


def test_a_paired_run_counts_every_non_2xx_answer_and_socket_error_of_its_warm_up_and_its_run():
    from bench.paired import _measure
    from bench.run import Bench, Config

    def result(statuses: dict, timeouts: int) -> dict:
        return {
            "requests": sum(statuses.values()),
            "duration_us": 1e6,
            "statuses": statuses,
            "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": timeouts},
            "latency_us": {"p99": 40_000},
            "cpu": None,
        }

    harness = Bench.__new__(Bench)
    harness.config = Config(quick=True)
    harness.api_key = "key"
    runs = iter([result({"200": 10, "503": 1}, 1), result({"200": 90, "201": 10, "429": 2}, 3)])
    harness.wrk = lambda url, mode, **kwargs: next(runs)

    figures = _measure(harness, "http://x", "ingest_unique", seconds=1, tag="t", area="203")

    assert figures == {"rps": 100.0, "p99_ms": 40.0, "steal_pct": None, "non_2xx": 7}
