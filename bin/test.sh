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

if [ "${EXPECT_FRESH_DATABASE:-0}" = 1 ]; then
  # The e-mail thread: scenario 3's sent e-mail and scenario 6's received one, with their contents.
  email_thread="$(mktemp)"
  curl -sS "$BASE_URL/api/conversations?channel=email" -o "$body_file" || true
  conversation_id="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' "$body_file" 2>/dev/null)"
  curl -sS "$BASE_URL/api/conversations/${conversation_id:-missing}/messages?order=asc" -o "$email_thread" || true
  if python3 - "$email_thread" <<'PY'; then
import json, sys
messages = json.load(open(sys.argv[1]))["data"]
by_direction = {m["direction"]: m for m in messages}
problems = []
if sorted(by_direction) != ["inbound", "outbound"] or len(messages) != 2:
    problems.append(f"expected one sent and one received e-mail, got {[(m['direction'], m['type']) for m in messages]}")
else:
    sent, received = by_direction["outbound"], by_direction["inbound"]
    expected = {
        "sent": (sent, "user@usehatchapp.com", "contact@gmail.com", "<b>HTML</b>", ["https://example.com/document.pdf"]),
        "received": (received, "contact@gmail.com", "user@usehatchapp.com", "incoming email with <b>HTML</b> content",
                     ["https://example.com/received-document.pdf"]),
    }
    for name, (message, sender, recipient, body_part, attachments) in expected.items():
        if message["type"] != "email":
            problems.append(f"{name}: type {message['type']}")
        if (message["from"], message["to"]) != (sender, recipient):
            problems.append(f"{name}: from/to {message['from']} -> {message['to']}")
        if body_part not in message["body"]:
            problems.append(f"{name}: body {message['body']!r} lacks {body_part!r}")
        if message["attachments"] != attachments:
            problems.append(f"{name}: attachments {message['attachments']}")
sys.exit("; ".join(problems) or 0)
PY
    echo "PASS the e-mail thread holds the sent and the received e-mail with their contents"
    passes=$((passes + 1))
  else
    echo "FAIL e-mail thread contents"
    failures=$((failures + 1))
  fi
  rm -f "$email_thread"
fi

echo "scenarios: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
