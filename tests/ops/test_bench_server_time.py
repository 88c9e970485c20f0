"""bench.server_time --requests: each kind of request's CPU by process (the PostgreSQL backend, the
Redis server, the requesting thread), read from the processes' own CPU clocks around a set of
requests, so that a part of a send can be weighed without a loaded run."""

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

    def cpu_ns(self, pid: int) -> int:
        return self.spent[pid]


def test_a_set_gives_each_processs_cpu_per_request():
    clocks = Clocks({101: 650_000, 202: 110_000})  # 650 us of PostgreSQL, 110 us of Redis a request

    report = server_time._per_request(clocks.request, 40, backend_pid=lambda: 101, redis_pid=202, cpu_ns=clocks.cpu_ns)

    assert clocks.requests == 40
    assert report["postgresql_us"] == 650.0
    assert report["redis_us"] == 110.0
    assert isinstance(report["thread_us"], float)
    assert isinstance(report["wall_us"], float)
    assert report["wall_us"] > 0
    assert set(report) == {"postgresql_us", "redis_us", "thread_us", "wall_us"}


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


def test_the_requests_threads_own_cpu_is_counted(monkeypatch):
    clocks = Clocks({101: 0})
    ticks = iter([1_000_000, 1_000_000 + 5 * 300_000])  # 300 us of this thread's CPU a request
    monkeypatch.setattr(server_time.time, "thread_time_ns", lambda: next(ticks))

    report = server_time._per_request(clocks.request, 5, backend_pid=lambda: 101, redis_pid=None, cpu_ns=clocks.cpu_ns)

    assert report["thread_us"] == 300.0


def test_unknown_scenarios_are_refused(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["server_time", "--requests", "--scenarios", "ingest,list"])

    with pytest.raises(SystemExit) as exited:
        server_time.main()

    assert exited.value.code == 2
    assert "not list" in capsys.readouterr().err
