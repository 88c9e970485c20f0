#!/usr/bin/env bash
# Shows the send rate limit tripping on a running service: N+1 SMS from one sender, where N is the
# X-RateLimit-Limit the service reports (the last one is answered 429 with Retry-After), then one SMS
# from another sender, which still passes. Exits non-zero if the service does not behave that way.
#
#   SMS_RATE_LIMIT=5 REDIS_URL=redis://127.0.0.1:6379/0 bin/start.sh     # in another terminal
#   bin/rate_limit_demo.sh                                               # BASE_URL=http://localhost:8080
#
# Environment: BASE_URL (default http://localhost:8080); API_KEY (sent as "Authorization: Bearer" when
# set); SENDER and OTHER_SENDER (default: random +1 201 555 / +1 973 555 numbers, so a rerun within the
# same window starts from a fresh count). Expects RATE_LIMIT_KEY=sender, the default.
set -euo pipefail

base_url="${BASE_URL:-http://localhost:8080}"
base_url="${base_url%/}"
suffix="$(printf '%04d' $((RANDOM % 10000)))"
sender="${SENDER:-+1201555$suffix}"
other_sender="${OTHER_SENDER:-+1973555$suffix}"
max_demo_limit=1000

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
auth=()
if [ -n "${API_KEY:-}" ]; then
  auth=(-H "Authorization: Bearer $API_KEY")
fi

fail() {
  echo "rate_limit_demo: $*" >&2
  exit 1
}

# The last value of a response header, without spaces or CR; empty when absent.
header() {
  { grep -i "^$1:" "$work/headers" || true; } | tail -n 1 | cut -d: -f2- | tr -d ' \r'
}

# send FROM INDEX: POSTs one SMS, prints one line, sets $status, $limit, $remaining, $retry_after.
send() {
  local from="$1" index="$2" reset now
  status="$(curl -sS -o "$work/body" -D "$work/headers" -w '%{http_code}' \
    -X POST "$base_url/api/messages/sms" -H 'Content-Type: application/json' "${auth[@]}" \
    -d "{\"from\": \"$from\", \"to\": \"+18045551234\", \"body\": \"Rate-limit demo message $index\"}")" ||
    fail "cannot reach $base_url (is the service running?)"
  limit="$(header X-RateLimit-Limit)"
  remaining="$(header X-RateLimit-Remaining)"
  reset="$(header X-RateLimit-Reset)"
  retry_after="$(header Retry-After)"
  now="$(date +%s)"
  printf '#%-4s %s from %s  X-RateLimit-Limit: %s  X-RateLimit-Remaining: %s  X-RateLimit-Reset: %s%s%s\n' \
    "$index" "$status" "$from" "${limit:--}" "${remaining:--}" "${reset:--}" \
    "${reset:+ (in $((reset - now)) s)}" "${retry_after:+  Retry-After: $retry_after}"
}

echo "POST $base_url/api/messages/sms"
send "$sender" 1
case "$status" in
  401 | 403) fail "answered $status: the service requires an API key; set API_KEY" ;;
  429) fail "$sender is already limited; set SENDER to another number or wait for the window to end" ;;
  2?? | 502) ;;
  *) fail "answered $status: $(cat "$work/body")" ;;
esac
[ -n "$limit" ] || fail "no X-RateLimit-* headers: limits are off (RATE_LIMIT_ENABLED=false) or the counters are unreachable (see the server log)"
[ "$limit" -le "$max_demo_limit" ] || fail "the limit is $limit; start the service with e.g. SMS_RATE_LIMIT=5 for this demo"

for index in $(seq 2 "$limit"); do
  send "$sender" "$index"
  [ "$status" != 429 ] || fail "limited after $((index - 1)) sends, before the limit of $limit"
done

send "$sender" $((limit + 1))
[ "$status" = 429 ] || fail "send $((limit + 1)) answered $status, expected 429"
[ -n "$retry_after" ] || fail "the 429 has no Retry-After header"
echo "      $(cat "$work/body")"
limited_for="$retry_after"

send "$other_sender" 1
[ "$status" != 429 ] || fail "another sender was limited too: is RATE_LIMIT_KEY set to ip or api_key?"

echo "ok: $sender was allowed $limit sends and refused the next (Retry-After: $limited_for s); $other_sender still passes"
