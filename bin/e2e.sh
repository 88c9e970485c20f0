#!/usr/bin/env bash
# Runs bin/test.sh and `manage.py simulate_provider` against a real gunicorn on a free port and a
# freshly created PostgreSQL database, then stops the server and drops the database. Used by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?DATABASE_URL must point at a PostgreSQL server (any database the user can connect to)}"
python=.venv/bin/python
e2e_db="messaging_e2e_$$"

# The same server, another database name.
E2E_DATABASE_URL="$("$python" - "$DATABASE_URL" "$e2e_db" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
print(urlunsplit(parts._replace(path="/" + sys.argv[2])))
PY
)"

# CREATE/DROP DATABASE run on the server's maintenance database, so the database DATABASE_URL names
# need not exist (pytest does not need it either).
admin_sql() {
  "$python" - "$DATABASE_URL" "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
import psycopg
url = urlunsplit(urlsplit(sys.argv[1])._replace(path="/postgres"))
try:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sys.argv[2])
except psycopg.Error as exc:
    sys.exit(f"e2e: {sys.argv[2].split(' IF ')[0]} failed: {exc}".strip())
PY
}

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  admin_sql "DROP DATABASE IF EXISTS $e2e_db WITH (FORCE)" || true
  rm -f "$log"
}
trap cleanup EXIT

admin_sql "CREATE DATABASE $e2e_db"
echo "e2e: gunicorn on 127.0.0.1:$port, database $e2e_db"
DATABASE_URL="$E2E_DATABASE_URL" PORT="$port" BIND_ADDRESS=127.0.0.1 WEB_CONCURRENCY=2 bin/start.sh >"$log" 2>&1 &
server_pid=$!

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "e2e: the server exited during start-up:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.5
done

# Both stages run even when the first fails, so a caller counting checks (.ci/run) sees them all.
status=0
BASE_URL="http://127.0.0.1:$port" EXPECT_FRESH_DATABASE=1 bin/test.sh || status=1

# Then as the providers would: retries, reordering, duplicates, unknown ids; checks the final states.
DATABASE_URL="$E2E_DATABASE_URL" "$python" manage.py simulate_provider --base-url "http://127.0.0.1:$port" || status=1

if [ "$status" != 0 ]; then
  echo "e2e: server log:" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
