#!/usr/bin/env bash
# Runs bin/test.sh and `manage.py simulate_provider` against a real gunicorn on a free port and a
# freshly created PostgreSQL database, then stops the server and drops the database. Used by `make test`.
# E2E_PROVIDER_MODE=http (`make e2e-http`): simulate_provider over HTTP, the service sending to the
# provider simulator (started here on a free port, no callbacks of its own: simulate_provider posts
# them, signed with the secrets set here); at the end the simulator's /stats must count exactly one
# send per message the service sent. bin/test.sh is skipped then: its webhooks are unsigned, and
# HTTP mode needs TWILIO_AUTH_TOKEN, which makes Twilio signatures required.
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

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
log="$(mktemp)"
server_pid=""
sim_pid=""
cleanup() {
  for pid in "$server_pid" "$sim_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  admin_sql "DROP DATABASE IF EXISTS $e2e_db WITH (FORCE)" || true
  rm -f "$log"
}
trap cleanup EXIT

admin_sql "CREATE DATABASE $e2e_db"
if [ "${E2E_PROVIDER_MODE:-mock}" = http ]; then
  sim_port="$(free_port)"
  sim_url="http://127.0.0.1:$sim_port"
  # The simulator and the service read the same credentials.
  export PROVIDER_MODE=http TWILIO_BASE_URL="$sim_url" SENDGRID_BASE_URL="$sim_url" META_GRAPH_BASE_URL="$sim_url"
  export TWILIO_ACCOUNT_SID="AC$(printf '%032d' 0)" SENDGRID_API_KEY=SG.e2e META_ACCESS_TOKEN=e2e-meta-token
  export WHATSAPP_PHONE_NUMBER_ID=106540352242922 TWILIO_AUTH_TOKEN=e2e-twilio-token
  export SENDGRID_WEBHOOK_VERIFICATION_KEY=e2e-sendgrid-key META_APP_SECRET=e2e-meta-secret
  echo "e2e: provider simulator on $sim_url (PROVIDER_MODE=http)"
  "$python" manage.py run_provider_sim --port "$sim_port" --callback-base-url "http://127.0.0.1:$port" \
    --no-callbacks >>"$log" 2>&1 &
  sim_pid=$!
fi
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
if [ -z "$sim_pid" ]; then
  BASE_URL="http://127.0.0.1:$port" EXPECT_FRESH_DATABASE=1 bin/test.sh || status=1
fi

# Then as the providers would: retries, reordering, duplicates, unknown ids; checks the final states.
DATABASE_URL="$E2E_DATABASE_URL" "$python" manage.py simulate_provider --base-url "http://127.0.0.1:$port" || status=1

if [ "$status" != 0 ]; then
  echo "e2e: server log:" >&2
  tail -n 50 "$log" >&2
fi

if [ -n "$sim_pid" ]; then
  # Every message the service sent was accepted by the simulator exactly once.
  if ! DATABASE_URL="$E2E_DATABASE_URL" "$python" - "$sim_url" <<'PY'
import json, os, sys
from urllib.request import ProxyHandler, build_opener
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")
django.setup()
from messaging.models import Direction, Message
from providers.registry import providers_all
stats = json.load(build_opener(ProxyHandler({})).open(sys.argv[1] + "/stats"))
sends = sum(stats[provider.name]["sends"] for provider in providers_all())
accepted = Message.objects.filter(direction=Direction.OUTBOUND, provider_message_id__isnull=False).count()
print(f"e2e: the simulator accepted {sends} message(s); the service recorded {accepted} as accepted")
sys.exit(0 if sends == accepted > 0 else 1)
PY
  then
    echo "e2e: provider sends and stored messages disagree" >&2
    status=1
  fi
fi
exit "$status"
