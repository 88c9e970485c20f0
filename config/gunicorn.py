"""gunicorn settings that bin/start.sh's command line cannot carry: Prometheus multi-process clean-up."""


def child_exit(server, worker):
    # A worker that exits leaves its live-gauge files behind; counters and histograms stay summed.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
