#!/usr/bin/env bash
# Starts the service with gunicorn on $PORT (default 8080): installs what is missing, migrates,
# collects static files for the admin and Swagger UI. Without DATABASE_URL it uses an SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."

# A .env file in the project root, if present, supplies variables not already set (see .env.example).
if [ -f .env ]; then
  while IFS='=' read -r name value; do
    [[ "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    value="${value%\"}" && value="${value#\"}"
    [ -n "${!name+x}" ] || export "$name=$value"
  done <.env
fi

bin/bootstrap.sh runtime
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.development}"
python=.venv/bin/python

# Migrations may build indexes for minutes: no statement or query bound for them.
DB_STATEMENT_TIMEOUT=0 DB_QUERY_TIMEOUT=0 "$python" manage.py migrate --noinput
"$python" manage.py collectstatic --noinput >/dev/null

port="${PORT:-8080}"
cores="$(nproc 2>/dev/null || echo 2)"
if [ -z "${DATABASE_URL:-}" ]; then
  # SQLite takes one writer at a time: one process, its threads queue on the database lock.
  workers="${WEB_CONCURRENCY:-1}"
  echo "start: DATABASE_URL is not set; using the SQLite file var/db.sqlite3" >&2
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

exec .venv/bin/gunicorn config.wsgi:application \
  --bind "${bind}:${port}" \
  --no-control-socket \
  --worker-class gthread \
  --workers "$workers" \
  --threads "$threads" \
  --timeout "${GUNICORN_TIMEOUT:-30}" \
  --graceful-timeout 20 \
  --access-logfile - \
  --error-logfile -
