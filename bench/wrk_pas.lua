-- wrk script for bench/pas_submit.py: POST /fhir/Claim/$submit, one PAS request Bundle per
-- request (a line of the BODIES file), its Claim identifier __ID__ replaced by PREFIX-<n> so that
-- every request opens a request of its own. done() prints one JSON line, as wrk_requests.lua does.

local bodies = {}
local key = os.getenv("KEY")
local prefix = os.getenv("PREFIX") or "PAS"
local counter = 0

function init(args)
  for line in io.lines(os.getenv("BODIES")) do
    bodies[#bodies + 1] = line
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/fhir+json"
  wrk.headers["X-API-Key"] = key
end

function request()
  counter = counter + 1
  local body = string.gsub(bodies[(counter % #bodies) + 1], "__ID__", prefix .. "-" .. counter)
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
