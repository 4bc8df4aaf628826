-- wrk script for bench/http_load.py.
-- With CASES set: POST /v1/evaluations, one generated case per request (a line of the CASES
-- file, a JSON object without external_id), each given its own external_id PREFIX-<thread>-<n>.
-- Without: GET of the URL given to wrk (the floor, /health).
-- Either way, done() prints one JSON line: requests, duration, errors and latency percentiles.

local cases = {}
local key = os.getenv("KEY")
local prefix = os.getenv("PREFIX") or "HTTP"
local counter = 0
local thread_number = 0
local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_number", next_thread)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("CASES")
  if path then
    for line in io.lines(path) do
      cases[#cases + 1] = string.sub(line, 2)  -- without the opening brace
    end
    wrk.method = "POST"
    wrk.path = "/v1/evaluations"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["X-API-Key"] = key
  end
end

function request()
  if #cases == 0 then
    return wrk.format()
  end
  counter = counter + 1
  local body = '{"external_id":"' .. prefix .. "-" .. thread_number .. "-" .. counter .. '",'
    .. cases[(counter % #cases) + 1]
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,'
    .. '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
