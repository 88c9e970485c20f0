#!/usr/bin/env bash
# Fuzzes every API operation with schemathesis against its own OpenAPI schema (/api/schema/), on a
# real gunicorn and a freshly created PostgreSQL database, and fails on any 5xx or any answer the
# schema does not describe. Two bounded runs, one server each:
#   1. the whole API as production runs it: API key required (sent with every request; schemathesis
#      also tries without it and expects the 401), webhook secrets set (unsigned webhooks: 403);
#   2. the webhooks without secrets, so their bodies reach the parsers (the most exposed endpoints).
# Then stops the servers and drops the database. Used by `make fuzz` (and so by .ci/run).
#   FUZZ_MAX_EXAMPLES          examples per operation and phase, run 1 (default 30)
#   FUZZ_WEBHOOK_MAX_EXAMPLES  the same for run 2 (default 60)
#   FUZZ_SEED                  replay a run: the seed schemathesis printed
#   FUZZ_REDIS_URL             the servers' rate-limit store (default redis://127.0.0.1:6379/12)
# schemathesis.toml has the checks' few exceptions; bin/fuzz_hooks.py makes values of the schema's formats.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?DATABASE_URL must point at a PostgreSQL server (any database the user can connect to)}"
python=.venv/bin/python
fuzz_db="messaging_fuzz_$$"
max_examples="${FUZZ_MAX_EXAMPLES:-30}"
webhook_max_examples="${FUZZ_WEBHOOK_MAX_EXAMPLES:-60}"

# The same server, another database name.
with_database() {
  "$python" - "$DATABASE_URL" "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
print(urlunsplit(parts._replace(path="/" + sys.argv[2])))
PY
}
FUZZ_DATABASE_URL="$(with_database "$fuzz_db")"
# CREATE/DROP DATABASE go through the server's maintenance database, which always exists.
ADMIN_DATABASE_URL="$(with_database postgres)"

admin_sql() {
  "$python" - "$ADMIN_DATABASE_URL" "$1" <<'PY'
import sys
import psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
PY
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d)"
child_pids=()
cleanup() {
  for pid in "${child_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  admin_sql "DROP DATABASE IF EXISTS $fuzz_db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

# Every setting the server reads that matters here is given explicitly, so a developer's .env
# (which bin/start.sh reads for unset variables) cannot change what is fuzzed.
server_env=(
  DATABASE_URL="$FUZZ_DATABASE_URL"
  DJANGO_SETTINGS_MODULE=config.settings.development
  DJANGO_DEBUG=false
  BIND_ADDRESS=127.0.0.1
  WEB_CONCURRENCY=2
  REDIS_URL="${FUZZ_REDIS_URL:-redis://127.0.0.1:6379/12}"
  RATE_LIMIT_KEY=sender
  RATE_LIMIT_FAIL_OPEN=true
  # High enough that the fuzzer meets the send pipeline, not 429s.
  SMS_RATE_LIMIT=100000/m
  EMAIL_RATE_LIMIT=100000/m
  # Schemathesis makes "longer than maxLength" strings for negative tests, and Hypothesis refuses a
  # minimum size over 8 KiB (InvalidArgument: an error of the run, for whichever seed draws it). The
  # documented 200,000-character limit is tested in tests/core/test_openapi_contract.py instead.
  EMAIL_MAX_BODY_CHARS=8000
  MOCK_PROVIDER_LATENCY_MS=0
  MOCK_PROVIDER_FAILURE_RATE=0
  SENDGRID_WEBHOOK_PUBLIC_KEY=
  PUBLIC_BASE_URL=
  LOG_LEVEL=WARNING
)

# start_server NAME VAR=VALUE...: starts gunicorn on a free port, sets $port once it is ready.
start_server() {
  local name="$1" log="$work/$1.log"
  shift
  port="$(free_port)"
  env "${server_env[@]}" "$@" PORT="$port" bin/start.sh >"$log" 2>&1 &
  child_pids+=("$!")
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && return 0
    if ! kill -0 "${child_pids[-1]}" 2>/dev/null; then
      echo "fuzz: the $name server exited during start-up:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "fuzz: the $name server did not become ready:" >&2
  cat "$log" >&2
  exit 1
}

# fuzz NAME PORT ARGS...: one schemathesis run against the server on PORT, its output in $work/NAME.out.
# One worker each: the two runs go side by side as separate processes instead, because Hypothesis
# parses source with `ast` for its reprs and CPython 3.11 before 3.11.8 can fail that with a
# SystemError when two threads do it at once.
fuzz() {
  local name="$1" port="$2"
  shift 2
  local args=(
    --config-file schemathesis.toml
    run "http://127.0.0.1:$port/api/schema/"
    --workers 1
    --request-timeout 10
    --generation-database none
    --suppress-health-check large_base_example
    --no-color
  )
  [ -n "${FUZZ_SEED:-}" ] && args+=(--seed "$FUZZ_SEED")
  .venv/bin/schemathesis "${args[@]}" "$@" >"$work/$name.out" 2>&1
}

# report NAME STATUS: prints a run's output, and the server's log when it failed.
report() {
  local name="$1" status="$2"
  echo "fuzz: $name (database $fuzz_db)"
  cat "$work/$name.out"
  if [ "$status" != 0 ]; then
    echo "fuzz: $name failed; server log (last 50 lines):" >&2
    tail -n 50 "$work/$name.log" >&2
  fi
}

admin_sql "CREATE DATABASE $fuzz_db"
start_server api API_AUTH_REQUIRED=true TWILIO_AUTH_TOKEN=fuzz-twilio-token \
  SENDGRID_WEBHOOK_VERIFICATION_KEY=fuzz-sendgrid-key
api_port="$port"
key="$(env "${server_env[@]}" "$python" manage.py create_api_key fuzz | tail -n 1 | awk '{print $NF}')"
# The key must really authenticate: otherwise every request of run 1 would be a 401, which the
# ignored_auth check expects and which is no test of the API at all. schemathesis.toml no longer
# accepts 401 for valid data, and this checks it directly, counted as a run.
key_status="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "http://127.0.0.1:$api_port/api/conversations")"
anonymous_status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api_port/api/conversations")"
key_checks_failed=0
if [ "$key_status" = 200 ] && [ "$anonymous_status" = 401 ]; then
  echo "fuzz: the API key authenticates (200 with it, 401 without)"
else
  echo "fuzz: the API key does not authenticate: $key_status with it, $anonymous_status without (want 200, 401)" >&2
  key_checks_failed=1
fi
# The same database; no secrets, so webhook bodies are parsed rather than refused unsigned.
start_server webhooks API_AUTH_REQUIRED=true TWILIO_AUTH_TOKEN= SENDGRID_WEBHOOK_VERIFICATION_KEY=
webhooks_port="$port"

fuzz api "$api_port" --max-examples "$max_examples" -H "Authorization: Bearer $key" &
api_pid=$!
child_pids+=("$api_pid")
fuzz webhooks "$webhooks_port" --max-examples "$webhook_max_examples" --include-tag webhooks &
webhooks_pid=$!
child_pids+=("$webhooks_pid")
api_status=0
webhooks_status=0
wait "$api_pid" || api_status=$?
wait "$webhooks_pid" || webhooks_status=$?
report api "$api_status"
report webhooks "$webhooks_status"
failed=$(((api_status != 0) + (webhooks_status != 0) + key_checks_failed))
echo "fuzz: $((3 - failed)) passed, $failed failed"
[ "$failed" = 0 ]
