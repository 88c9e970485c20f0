"""gunicorn settings that bin/start.sh's command line does not carry: the worker class that spreads
connections over the processes and answers a kept-alive connection's next request on the thread that
answered the last (core/gunicorn_worker.py), each thread's database connection opened and start-up
objects kept out of the garbage collector's full passes before a process serves (core/startup.py),
two of Django's per-request receivers that do nothing with DEBUG off disconnected (core/startup.py),
gunicorn's own settings read once and its ``Date`` header formatted once a second (``settle``,
core/gunicorn_worker.py), and Prometheus multi-process clean-up.

gunicorn reads them with ``--config python:config.gunicorn`` (bin/start.sh) and, when it is started
from the project's root without ``--config``, through ``gunicorn.conf.py``, which imports this module.
``GUNICORN_BALANCED_ACCEPT=false`` keeps gunicorn's own gthread class; ``GUNICORN_KEEPALIVE_LINGER_MS``
sets how long a thread waits for a kept-alive connection's next request (0: not at all);
``GC_FREEZE=false`` leaves the start-up objects to the garbage collector (core/startup.py);
``GUNICORN_WARM_THREADS=false`` leaves each thread to open its database connection on its first request
instead of before the process serves (core/startup.py, ``warm_database_connection``);
``GUNICORN_SWITCH_INTERVAL_MS`` sets how long a thread may run before another of its process that is
waiting for the interpreter makes it let go (``sys.setswitchinterval``; Python's own is 5 ms);
``GUNICORN_ACTIVE_REQUESTS`` sets how many requests a process runs at once, the others waiting their
turn in arrival order (core/admission.py; ``auto``: one where there are at least as many processes as
cores and a process has more than one thread, else no limit; 0: no limit), and
``GUNICORN_ACTIVE_WAIT_MS`` how long a request waits for its turn before it runs anyway;
``GUNICORN_ACTIVE_PROCESSES`` how many processes take new connections at once, the others standing
by for connections that wait (core/gunicorn_worker.py; 0, the default: all; ``auto``: one more than
the cores where each process runs one request at a time and there are more processes than that,
else all).
"""

import os
import sys
import time
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

from config.env import Env
from core.startup import drop_idle_request_receivers, freeze_start_up_objects


def balanced_accepts() -> bool:
    return Env().bool("GUNICORN_BALANCED_ACCEPT", default=True)


def warm_threads_enabled() -> bool:
    return Env().bool("GUNICORN_WARM_THREADS", default=True)


def keepalive_linger() -> float:
    """Seconds a pool thread waits for the next request on a kept-alive connection it answered
    (core/gunicorn_worker.py): ``GUNICORN_KEEPALIVE_LINGER_MS``, 5 by default; 0 hands every
    connection back to the main thread after each answer, as gunicorn's gthread does."""
    from core.gunicorn_worker import KEEPALIVE_LINGER

    return Env().float("GUNICORN_KEEPALIVE_LINGER_MS", default=KEEPALIVE_LINGER * 1000, maximum=1000) / 1000


#: ``GUNICORN_SWITCH_INTERVAL_MS`` by default (docs/OPERATIONS.md, "The interpreter's switch interval").
SWITCH_INTERVAL_MS = 100.0


def switch_interval() -> float:
    """Seconds a thread of a web process may hold the interpreter while another waits for it, before
    it is made to let go: ``GUNICORN_SWITCH_INTERVAL_MS``. A request lets go on its own at each
    database or Redis round trip, a few hundred microseconds apart; a thread waiting for the
    interpreter wakes once per interval to ask for it, and a forced hand-over costs the one holding it
    a context switch and a cold cache. With Python's 5 ms, under load, the web processes switched
    4,479 times per CPU-second; with 100 ms, 2,723 (involuntary switches down as much as voluntary
    ones), for 1-4% more requests per second (docs/PERFORMANCE.md, twenty-third round). The interval
    still bounds how long one long computation can make the other threads of its process wait."""
    return Env().float("GUNICORN_SWITCH_INTERVAL_MS", default=SWITCH_INTERVAL_MS, minimum=1, maximum=1000) / 1000


#: ``GUNICORN_ACTIVE_WAIT_MS`` by default (docs/OPERATIONS.md, "Requests of a process run in turn").
ACTIVE_WAIT_MS = 100.0


def active_requests(*, workers: int, threads: int, cores: int | None) -> int:
    """How many requests a web process runs at once (0: as many as its threads), from
    ``GUNICORN_ACTIVE_REQUESTS``: a whole number, or ``auto`` (the default): one where the server has
    at least as many processes as cores (while one request of a process waits on the database the
    other processes keep the cores busy), no limit where it has fewer (one process on SQLite, say) or a
    process has one thread."""
    return _count_or_auto("GUNICORN_ACTIVE_REQUESTS", lambda: 1 if threads > 1 and workers >= (cores or 1) else 0)


def active_processes(*, workers: int, threads: int, cores: int | None) -> int:
    """How many of the server's processes take new connections at once (0: all of them), from
    ``GUNICORN_ACTIVE_PROCESSES``: a whole number (0, all of them, by default), or ``auto``: one more
    than the cores where each process runs one request at a time (``active_requests``) and the server
    has more processes than that, so that while one process waits on the database the others keep
    the cores busy; all of them otherwise. ``auto`` was the default in the twenty-eighth and
    twenty-ninth rounds: it served more on one machine and less on another (docs/PERFORMANCE.md,
    thirtieth round)."""

    def auto() -> int:
        enough = (cores or 1) + 1
        one_at_a_time = active_requests(workers=workers, threads=threads, cores=cores) == 1
        return enough if one_at_a_time and workers > enough else 0

    return _count_or_auto("GUNICORN_ACTIVE_PROCESSES", auto, default="0")


def _count_or_auto(name: str, auto: Callable[[], int], *, default: str = "auto") -> int:
    """The environment's ``name`` (else ``default``): a whole number from 0, or ``auto``, which
    ``auto()`` works out."""
    env = Env()
    if env.str(name, default=default).lower() == "auto":
        return auto()
    try:
        return env.int(name, default=0, minimum=0, maximum=10000)
    except ImproperlyConfigured as error:
        raise ImproperlyConfigured(f"{error} ({name}: a whole number from 0, or auto)") from None


def cores() -> int | None:
    """The cores this process may run on (its CPU affinity, as ``nproc`` counts them for bin/start.sh's
    default number of processes), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def active_wait() -> float:
    """Seconds a request waits for its turn before it runs anyway: ``GUNICORN_ACTIVE_WAIT_MS``."""
    return Env().float("GUNICORN_ACTIVE_WAIT_MS", default=ACTIVE_WAIT_MS, minimum=1, maximum=60000) / 1000


worker_class = "core.gunicorn_worker.BalancedThreadWorker" if balanced_accepts() else "gthread"
keepalive_linger()  # a bad value stops gunicorn as it reads this file, not each process as it starts
switch_interval()
active_requests(workers=1, threads=1, cores=1)
active_processes(workers=1, threads=1, cores=1)
active_wait()


def post_worker_init(worker):
    # A command line that says `--worker-class gthread` overrides worker_class above: the process
    # becomes the balanced subclass before it serves (the subclass changes when it accepts and which
    # thread answers a kept-alive connection, nothing it holds).
    from gunicorn.workers.gthread import ThreadWorker

    from core.gunicorn_worker import BalancedThreadWorker, process_rank, settle

    if type(worker) is ThreadWorker and balanced_accepts():
        worker.__class__ = BalancedThreadWorker
    if isinstance(worker, BalancedThreadWorker):
        worker.keepalive_linger = keepalive_linger()
        cfg = getattr(worker, "cfg", None)
        if cfg is not None:
            worker.active_processes = active_processes(workers=cfg.workers, threads=cfg.threads, cores=cores())
        if worker.active_processes and process_rank(os.getpid(), os.getppid()) is None:
            worker.log.info("Worker %s cannot read its rank in /proc: every process takes new connections", worker.pid)
            worker.active_processes = 0
        worker.log.info(
            "Worker %s accepts least-loaded first and waits %s ms for a kept-alive connection's next request"
            " (core.gunicorn_worker.BalancedThreadWorker)%s",
            worker.pid,
            f"{worker.keepalive_linger * 1000:g}",
            f"; the {worker.active_processes} youngest processes take new connections first, the others stand by"
            " (GUNICORN_ACTIVE_PROCESSES)"
            if worker.active_processes
            else "",
        )
    settle(worker)
    before = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval())
    if sys.getswitchinterval() != before:  # as Python keeps it: whole microseconds
        worker.log.info("Worker %s: switch interval %s ms", worker.pid, f"{sys.getswitchinterval() * 1000:g}")
    if getattr(worker, "tpool", None) is not None and warm_threads_enabled():
        _warm(worker)
    _admit(worker)
    drop_idle_request_receivers()
    frozen = freeze_start_up_objects(urlconf=True)
    if frozen is not None:
        worker.log.info("Worker %s: %s start-up objects frozen out of the garbage collector", worker.pid, frozen)


def _admit(worker):
    from core.admission import AdmissionGate, admitted

    application, cfg = getattr(worker, "wsgi", None), getattr(worker, "cfg", None)
    if application is None or cfg is None or getattr(application, "admission_gate", None) is not None:
        return  # no application loaded, or admitted already
    slots = active_requests(workers=cfg.workers, threads=cfg.threads, cores=cores())
    if not slots:
        worker.log.info("Worker %s runs its requests at once (GUNICORN_ACTIVE_REQUESTS)", worker.pid)
        return
    gate = AdmissionGate(slots, wait=active_wait())
    worker.wsgi = admitted(application, gate, preread=_body_limit())
    worker.log.info(
        "Worker %s runs %s request(s) at a time, the others in turn (each waits at most %s ms)",
        worker.pid,
        slots,
        f"{gate.wait * 1000:g}",
    )


def _body_limit() -> int:
    """The longest body read before a request's turn: the longest the API takes
    (``MAX_REQUEST_BODY_BYTES``; it refuses a longer one with 413), Django's upload limit for another
    application, 1 MiB without settings."""
    from django.conf import settings

    if settings.configured:
        for name in ("MAX_REQUEST_BODY_BYTES", "DATA_UPLOAD_MAX_MEMORY_SIZE"):
            if isinstance(getattr(settings, name, None), int):
                return getattr(settings, name)
    return 1024 * 1024


def _warm(worker):
    from django.apps import apps

    if not apps.ready:
        return  # not a Django application
    from core.gunicorn_worker import warm_threads
    from core.startup import warm_database_connection

    started = time.monotonic()
    failures = [error for error in warm_threads(worker, warm_database_connection) if error is not None]
    took = (time.monotonic() - started) * 1000
    if failures:
        # One line for the process, not a traceback per thread (a database that is down at start).
        worker.log.warning(
            "Worker %s: %s of %s threads could not open their database connections in %.0f ms"
            " (they will on their first requests): %s",
            worker.pid,
            len(failures),
            worker.cfg.threads,
            took,
            repr(failures[0]),
        )
    else:
        worker.log.info(
            "Worker %s: %s threads opened their database connections in %.0f ms", worker.pid, worker.cfg.threads, took
        )


def child_exit(server, worker):
    # A worker that exits leaves its live-gauge files behind; counters and histograms stay summed.
    if not Env().str("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
