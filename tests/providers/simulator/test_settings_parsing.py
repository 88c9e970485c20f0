"""The X-Sim-Fail grammar and the settings the command line and POST /control accept."""

import pytest

from providers.simulator.config import Behaviour, parse_range_ms, parse_rate
from providers.simulator.faults import Fault, FaultSyntaxError, parse_fault


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        ("503", Fault(kind="status", status=503)),
        ("429;retry_after=2", Fault(kind="status", status=429, retry_after=2)),
        ("400; code=21211", Fault(kind="status", status=400, code="21211")),
        ("timeout", Fault(kind="timeout")),
        ("timeout;seconds=2.5", Fault(kind="timeout", seconds=2.5)),
        ("RESET", Fault(kind="reset")),
        ("reset-before", Fault(kind="reset-before")),
        ("invalid-json", Fault(kind="invalid-json")),
        ("invalid-json;status=502", Fault(kind="invalid-json", status=502)),
    ],
)
def test_fault_headers_parse(header, fault):
    assert parse_fault(header) == fault


@pytest.mark.parametrize(
    "header",
    ["200", "600", "explode", "429;retry_after=soon", "timeout;seconds=-1", "reset;hard=1", "503;retry_after"],
)
def test_bad_fault_headers_are_refused(header):
    with pytest.raises(FaultSyntaxError):
        parse_fault(header)


def test_only_timeout_reset_and_successful_invalid_json_count_as_accepted():
    accepted = [parse_fault(h).accepts for h in ("timeout", "reset", "invalid-json", "invalid-json;status=500")]
    refused = [parse_fault(h).accepts for h in ("503", "429", "reset-before")]

    assert accepted == [True, True, True, False]
    assert refused == [False, False, False]


@pytest.mark.parametrize(
    ("value", "expected"), [("100-500", (100, 500)), ("250", (250, 250)), (0, (0, 0)), ([5, 9], (5, 9))]
)
def test_millisecond_ranges_parse(value, expected):
    assert parse_range_ms(value) == expected


@pytest.mark.parametrize("value", ["500-100", "-5", "fast", True, [1, 2, 3]])
def test_bad_millisecond_ranges_are_refused(value):
    with pytest.raises(ValueError, match="range"):
        parse_range_ms(value)


def test_rates_are_between_zero_and_one():
    assert parse_rate("0.25") == 0.25
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_rate(1.5)


def test_behaviour_updates_name_the_unknown_setting():
    with pytest.raises(ValueError, match="volume"):
        Behaviour().updated({"volume": 11})
    assert Behaviour().updated({"mode": "down"}).mode == "down"
