"""bench.paired against the one-file baseline: the ratios issue 12's targets name, read round by round."""

import argparse

import pytest

from bench.paired import BASELINE, _arguments, _served_mode, _summary, _variant


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
    summary = _summary([BASELINE, "service"], ["ingest_unique", "ingest_dup", "send"], runs)

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
    summary = _summary(["before", "after"], ["send"], runs)

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
