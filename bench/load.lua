-- wrk script for `make bench` (bench/run.py sets the environment). One script, five request shapes:
--   BENCH_MODE=ingest_unique  POST /api/webhooks/sms, every messaging_provider_id new
--   BENCH_MODE=ingest_dup     the same, each id sent twice in a row (50% duplicates, often concurrent)
--   BENCH_MODE=send           POST /api/messages/sms, every sender new (no rate limit trips)
--   BENCH_MODE=list           GET /api/conversations (first page)
--   BENCH_MODE=thread         GET /api/conversations/<random seeded id>/messages (first page)
-- BENCH_TAG makes ids unique per run; BENCH_AUTH is an Authorization header value (optional);
-- BENCH_OUT is where done() writes the summary (JSON) and, for writes, BENCH_OUT..".ids" the id
-- of every 2xx answer with its status word, one per line, so the harness can match rows to answers.

local mode = os.getenv("BENCH_MODE") or "ingest_unique"
local tag = os.getenv("BENCH_TAG") or "run"
local auth = os.getenv("BENCH_AUTH")
local prefer = os.getenv("BENCH_PREFER") -- a Prefer header value (optional): respond-async for send_async
local out = os.getenv("BENCH_OUT")
local first_id = tonumber(os.getenv("BENCH_FIRST_ID") or "1")
local last_id = tonumber(os.getenv("BENCH_LAST_ID") or "1")
local business = "+18045551234"
local senders = tonumber(os.getenv("BENCH_SENDERS") or "1000") -- inbound senders per wrk thread

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count - 1)
  table.insert(threads, thread)
end

local counter = 0
statuses = {} -- globals: done() reads them from each thread
answered = {}
local headers = { ["Content-Type"] = "application/json", ["X-Forwarded-Proto"] = "https" }

function init(args)
  if auth and auth ~= "" then
    headers["Authorization"] = auth
  end
  if prefer and prefer ~= "" then
    headers["Prefer"] = prefer
  end
  math.randomseed(os.time() + (tid or 0) * 7919)
end

-- A distinct, valid US number per (thread, n): exchange 200-999 of the given area code.
local function number(area, n)
  local stride = tonumber(os.getenv("BENCH_WRK_THREADS") or "2")
  return string.format("+1%s%07d", area, 2000000 + n * stride + tid)
end

local function inbound(id, n)
  return string.format(
    '{"from": "%s", "to": "%s", "type": "sms", "messaging_provider_id": "%s", '
      .. '"body": "bench inbound %d", "attachments": null, "timestamp": "2026-01-01T00:00:00Z"}',
    number("202", n % senders), business, id, n)
end

function request()
  local n = counter
  counter = counter + 1
  if mode == "ingest_unique" then
    return wrk.format("POST", "/api/webhooks/sms", headers, inbound(tag .. "-" .. tid .. "-" .. n, n))
  elseif mode == "ingest_dup" then
    local pair = math.floor(n / 2)
    return wrk.format("POST", "/api/webhooks/sms", headers, inbound(tag .. "-" .. tid .. "-" .. pair, pair))
  elseif mode == "send" then
    local body = string.format('{"from": "%s", "to": "%s", "body": "bench send %s-%d"}',
      number(os.getenv("BENCH_SENDER_AREA") or "203", n), business, tag, n)
    return wrk.format("POST", "/api/messages/sms", headers, body)
  elseif mode == "list" then
    return wrk.format("GET", "/api/conversations", headers)
  elseif mode == "thread" then
    return wrk.format("GET", "/api/conversations/" .. math.random(first_id, last_id) .. "/messages", headers)
  end
  error("unknown BENCH_MODE " .. mode)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status < 200 or status > 299 then
    return
  end
  if mode == "ingest_unique" or mode == "ingest_dup" then
    local id = body:match('"event_id":%s*"([^"]*)"')
    local word = body:match('"status":%s*"([%a_]+)"')
    table.insert(answered, (id or "?") .. " " .. (word or "?"))
  elseif mode == "send" then
    local id = body:match('^%s*{%s*"id":%s*(%d+)')
    local word = body:match('"status":%s*"([%a_]+)"')
    table.insert(answered, (id or "?") .. " " .. (word or "?"))
  end
end

local function json_table(t)
  local parts = {}
  for k, v in pairs(t) do
    table.insert(parts, string.format('"%s": %s', tostring(k), tostring(v)))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local all_statuses = {}
  local ids = out and io.open(out .. ".ids", "w") or nil
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      all_statuses[status] = (all_statuses[status] or 0) + count
    end
    if ids then
      for _, line in ipairs(thread:get("answered")) do
        ids:write(line, "\n")
      end
    end
  end
  if ids then
    ids:close()
  end
  local e = summary.errors
  local result = string.format(
    '{"mode": "%s", "requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "statuses": %s}',
    mode, summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, json_table(all_statuses))
  if out then
    local f = io.open(out, "w")
    f:write(result, "\n")
    f:close()
  else
    io.write(result, "\n")
  end
end
