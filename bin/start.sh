#!/usr/bin/env bash
# Starts the web service with gunicorn on $PORT (default 8080): installs what is missing, migrates,
# collects static files for the admin and Swagger UI. Without DATABASE_URL it uses an SQLite file.
#
# This is the web process only. Production runs three things (docs/OPERATIONS.md#running-in-production):
#   - this script (gunicorn), bound to 127.0.0.1 or a private network;
#   - nginx in front of it (deploy/nginx.conf; bin/proxy.sh runs it without Docker), which buffers
#     slow clients so they cannot tie up gunicorn's threads;
#   - at least one outbox worker, `manage.py run_worker`, without which a send that failed once stays
#     pending for ever.
# docker-compose.yml runs all three (services nginx, api, worker); deploy/messaging-web.service and
# deploy/messaging-worker.service are systemd unit examples; `make run` (bin/run.sh) runs web + worker.
set -euo pipefail
cd "$(dirname "$0")/.."

source bin/dotenv.sh

bin/bootstrap.sh runtime
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.development}"
python=.venv/bin/python

# Migrations may build indexes for minutes: no statement or query bound for them.
DB_STATEMENT_TIMEOUT=0 DB_QUERY_TIMEOUT=0 "$python" manage.py migrate --noinput
"$python" manage.py collectstatic --noinput >/dev/null

port="${PORT:-8080}"
cores="$(nproc 2>/dev/null || echo 2)"
if [ -z "${DATABASE_URL:-}" ] || [[ "$DATABASE_URL" == sqlite* ]]; then
  # SQLite takes one writer at a time: one process, its threads queue on the database lock.
  workers="${WEB_CONCURRENCY:-1}"
  if [ -z "${DATABASE_URL:-}" ]; then
    echo "start: DATABASE_URL is not set; using the SQLite file var/db.sqlite3" >&2
  fi
else
  workers="${WEB_CONCURRENCY:-$((cores * 2 + 1))}"
fi
# Each send waits on the provider inline (100-500 ms with the mocks), so a request mostly sleeps
# on I/O: threaded workers keep many in flight without one process per request.
threads="${GUNICORN_THREADS:-8}"

bind="${BIND_ADDRESS:-0.0.0.0}"
cat >&2 <<MSG
start: listening on ${bind}:${port} (${workers} process(es) x ${threads} threads)
  API         http://127.0.0.1:${port}/api/conversations
  Swagger UI  http://127.0.0.1:${port}/api/docs/
  Admin       http://127.0.0.1:${port}/admin/   (create a login: .venv/bin/python manage.py createsuperuser)
MSG

# Prometheus multi-process mode: every gunicorn process (and a worker sharing the directory) writes its
# samples here; /metrics adds them up. Emptied at start, as prometheus-client requires.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$(pwd)/var/metrics-$port}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
if [ -z "${METRICS_KEEP_FILES:-}" ]; then
  find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
fi

# No access log: core.middleware.RequestLogMiddleware writes one JSON line per request, with its id.
# config.gunicorn sets the worker class: gthread, taking new connections least-loaded first
# (core/gunicorn_worker.py), so nginx's kept-alive connections spread over the processes, and
# answering a kept-alive connection's next request on the thread that answered the last.
exec .venv/bin/gunicorn config.wsgi:application \
  --config python:config.gunicorn \
  --bind "${bind}:${port}" \
  --no-control-socket \
  --workers "$workers" \
  --threads "$threads" \
  --timeout "${GUNICORN_TIMEOUT:-30}" \
  --graceful-timeout 20 \
  --error-logfile -
