#!/usr/bin/env bash
# `make run`: the web server (bin/start.sh) and the outbox worker (manage.py run_worker) together, so a
# send that failed once is retried on the default run. One Ctrl-C (or SIGTERM) stops both: the worker
# finishes its deliveries in flight. If either exits, the other is stopped and the exit code kept.
set -euo pipefail
cd "$(dirname "$0")/.."
source bin/dotenv.sh
bin/bootstrap.sh runtime
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.development}"
python=.venv/bin/python

# Migrate before either starts, so the worker never meets a missing table.
DB_STATEMENT_TIMEOUT=0 DB_QUERY_TIMEOUT=0 "$python" manage.py migrate --noinput

# One metrics directory for both, so /metrics includes the worker's attempts (core/metrics.py).
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$(pwd)/var/metrics-${PORT:-8080}}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
export METRICS_KEEP_FILES=1

web_pid=""
worker_pid=""
stop() {
  trap - INT TERM
  for pid in $worker_pid $web_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap 'stop' INT TERM

bin/start.sh &
web_pid=$!
"$python" manage.py run_worker &
worker_pid=$!
echo "run: web server (pid $web_pid) and outbox worker (pid $worker_pid); Ctrl-C stops both" >&2

status=0
# Whichever ends first (or a signal) stops the other.
wait -n "$web_pid" "$worker_pid" || status=$?
stop
wait "$web_pid" 2>/dev/null || true
wait "$worker_pid" 2>/dev/null || true
exit "$status"
