#!/usr/bin/env bash
# The scaffold's eight scenarios, run with curl against a running service.
# Exits non-zero when any answers an unexpected status.
#   BASE_URL                  service to test (default http://localhost:8080)
#   EXPECT_FRESH_DATABASE=1   also check that conversation 1 holds the two sent and two received SMS/MMS
set -uo pipefail

BASE_URL="${BASE_URL:-http://localhost:8080}"
CONTENT_TYPE="Content-Type: application/json"
failures=0
passes=0
body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT

# check NAME EXPECTED_STATUS METHOD PATH [JSON]
check() {
  local name="$1" expected="$2" method="$3" path="$4" data="${5:-}"
  local args=(-sS -o "$body_file" -w "%{http_code}" -X "$method" "$BASE_URL$path" -H "$CONTENT_TYPE")
  [ -n "$data" ] && args+=(-d "$data")
  local status
  status="$(curl "${args[@]}")" || status="000"
  if [ "$status" = "$expected" ]; then
    echo "PASS $name -> $status"
    passes=$((passes + 1))
  else
    echo "FAIL $name -> $status (expected $expected)"
    head -c 500 "$body_file"
    echo
    failures=$((failures + 1))
  fi
}

echo "=== Messaging service scenarios against $BASE_URL ==="

check "1. send SMS" 201 POST /api/messages/sms '{
    "from": "+12016661234",
    "to": "+18045551234",
    "type": "sms",
    "body": "Hello! This is a test SMS message.",
    "attachments": null,
    "timestamp": "2024-11-01T14:00:00Z"
  }'

check "2. send MMS" 201 POST /api/messages/sms '{
    "from": "+12016661234",
    "to": "+18045551234",
    "type": "mms",
    "body": "Hello! This is a test MMS message with attachment.",
    "attachments": ["https://example.com/image.jpg"],
    "timestamp": "2024-11-01T14:00:00Z"
  }'

check "3. send Email" 201 POST /api/messages/email '{
    "from": "user@usehatchapp.com",
    "to": "contact@gmail.com",
    "body": "Hello! This is a test email message with <b>HTML</b> formatting.",
    "attachments": ["https://example.com/document.pdf"],
    "timestamp": "2024-11-01T14:00:00Z"
  }'

check "4. inbound SMS webhook" 200 POST /api/webhooks/sms '{
    "from": "+18045551234",
    "to": "+12016661234",
    "type": "sms",
    "messaging_provider_id": "message-1",
    "body": "This is an incoming SMS message",
    "attachments": null,
    "timestamp": "2024-11-01T14:00:00Z"
  }'

check "5. inbound MMS webhook" 200 POST /api/webhooks/sms '{
    "from": "+18045551234",
    "to": "+12016661234",
    "type": "mms",
    "messaging_provider_id": "message-2",
    "body": "This is an incoming MMS message",
    "attachments": ["https://example.com/received-image.jpg"],
    "timestamp": "2024-11-01T14:00:00Z"
  }'

check "6. inbound Email webhook" 200 POST /api/webhooks/email '{
    "from": "contact@gmail.com",
    "to": "user@usehatchapp.com",
    "xillio_id": "message-3",
    "body": "<html><body>This is an incoming email with <b>HTML</b> content</body></html>",
    "attachments": ["https://example.com/received-document.pdf"],
    "timestamp": "2024-11-01T14:00:00Z"
  }'

check "7. list conversations" 200 GET /api/conversations

check "8. messages of conversation 1" 200 GET /api/conversations/1/messages

if [ "${EXPECT_FRESH_DATABASE:-0}" = 1 ]; then
  if python3 - "$body_file" <<'PY'; then
import json, sys
messages = json.load(open(sys.argv[1]))["data"]
kinds = sorted((m["direction"], m["type"]) for m in messages)
expected = [("inbound", "mms"), ("inbound", "sms"), ("outbound", "mms"), ("outbound", "sms")]
sys.exit(0 if kinds == expected else f"conversation 1 holds {kinds}, expected {expected}")
PY
    echo "PASS conversation 1 holds the two sent and two received SMS/MMS"
    passes=$((passes + 1))
  else
    echo "FAIL conversation 1 contents"
    failures=$((failures + 1))
  fi
fi

echo "scenarios: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
