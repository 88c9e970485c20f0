"""bench.server_time --requests: each kind of request's CPU by process (the PostgreSQL backend, the
Redis server, the requesting thread), read from the processes' own CPU clocks around a set of
requests, so that a part of a send can be weighed without a loaded run."""

import io
import logging

import pytest

from bench import server_time


class Clocks:
    """Stands in for /proc/<pid>/schedstat: each request adds what it costs each process."""

    def __init__(self, costs: dict[int, int]) -> None:
        self.costs = costs
        self.spent = dict.fromkeys(costs, 0)
        self.requests = 0

    def request(self) -> None:
        self.requests += 1
        for pid, ns in self.costs.items():
            self.spent[pid] += ns

    def cpu_ns(self, pid: int, server: str) -> int:
        return self.spent[pid]


def stand_in(monkeypatch, name: str, readings: list[int]) -> None:
    ticks = iter(readings)
    monkeypatch.setattr(server_time.time, name, lambda: next(ticks))


def test_a_set_gives_each_process_its_cpu_per_request(monkeypatch):
    clocks = Clocks({101: 650_000, 202: 110_000})  # 650 us of PostgreSQL, 110 us of Redis a request
    stand_in(monkeypatch, "thread_time_ns", [1_000_000, 1_000_000 + 40 * 1_400_000])  # 1,400 us a request
    stand_in(monkeypatch, "perf_counter_ns", [5_000_000, 5_000_000 + 40 * 2_400_000])  # 2,400 us a request

    report = server_time._per_request(clocks.request, 40, backend_pid=lambda: 101, redis_pid=202, cpu_ns=clocks.cpu_ns)

    assert clocks.requests == 40
    assert report == {"postgresql_us": 650.0, "redis_us": 110.0, "thread_us": 1400.0, "wall_us": 2400.0}


def test_without_a_local_redis_server_its_share_is_null():
    clocks = Clocks({101: 400_000})

    report = server_time._per_request(clocks.request, 10, backend_pid=lambda: 101, redis_pid=None, cpu_ns=clocks.cpu_ns)

    assert report["postgresql_us"] == 400.0
    assert report["redis_us"] is None


def test_a_set_whose_database_connection_changed_is_refused():
    clocks = Clocks({101: 1_000, 102: 1_000})
    pids = iter([101, 102])

    with pytest.raises(SystemExit, match="connection changed"):
        server_time._per_request(
            clocks.request, 5, backend_pid=lambda: next(pids), redis_pid=None, cpu_ns=clocks.cpu_ns
        )


class RedisClient:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def info(self, section: str) -> dict:
        assert section == "server"
        return {"process_id": self.pid, "redis_version": "7.0.15"}


def test_the_redis_server_is_timed_only_where_its_process_runs_here(tmp_path):
    (tmp_path / "4321").mkdir()
    (tmp_path / "4321" / "comm").write_text("redis-server\n")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "comm").write_text("systemd\n")  # a container's own pid 1 names another process here

    assert server_time._redis_pid(RedisClient(4321), proc=tmp_path) == 4321
    assert server_time._redis_pid(RedisClient(1), proc=tmp_path) is None
    assert server_time._redis_pid(RedisClient(9999), proc=tmp_path) is None  # no such process here


def test_a_server_that_is_gone_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(server_time, "PROC", tmp_path)

    with pytest.raises(SystemExit, match="the Redis server must run on this machine"):
        server_time._cpu_ns(4321, "the Redis server")


def test_the_service_log_lines_are_still_written_but_not_over_the_report(tmp_path):
    shown = io.StringIO()
    logger = logging.getLogger("tests.bench.server_time")
    console = logging.StreamHandler(shown)
    kept = logging.FileHandler(tmp_path / "kept.log")
    logger.handlers[:] = [console, kept]
    logger.propagate = False
    try:
        server_time._log_to_nowhere([logger])
        logger.warning("one line a request")
    finally:
        logger.handlers[:] = []
        kept.close()

    assert shown.getvalue() == ""
    assert console.stream.name == server_time.os.devnull
    assert (tmp_path / "kept.log").read_text() == "one line a request\n"  # a file handler keeps its file


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scenarios", "ingest,list"], "not list"),
        (["--scenarios", ","], "name one or more of ingest, duplicate, send"),
        (["--count", "0"], "must be 1 or more"),
        (["--sets", "-1"], "must be 1 or more"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(monkeypatch, capsys, arguments, message):
    monkeypatch.setattr(server_time, "_requests_report", lambda *args: pytest.fail("ran"))
    monkeypatch.setattr("sys.argv", ["server_time", "--requests", *arguments])

    with pytest.raises(SystemExit) as exited:
        server_time.main()

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_scenarios_are_run_once_each_in_the_order_given(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(
        server_time, "_requests_report", lambda scenarios, count, sets: ran.append((scenarios, count, sets)) or {}
    )
    monkeypatch.setattr("sys.argv", ["server_time", "--requests", "--scenarios", "send,ingest,send", "--count", "7"])

    server_time.main()

    assert ran == [(["send", "ingest"], 7, 3)]
