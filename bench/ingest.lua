-- wrk script for `cargo xtask bench`: POST /v1/batch with 50 events per request, every event id
-- unique (a repeated id would be deduplicated, which is cheaper than a real insert), also across
-- the runs against one collector: ids carry the run's start time. The body is what the SDK
-- sends: text/plain JSON with the write key inside. `bench_sqlite insert` writes rows of the
-- same shape.
local threads = {}
local counter = 0
local run = string.format("%08x", os.time())

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
end

function request()
  counter = counter + 1
  local now = math.floor(os.time() * 1000)
  local prefix = string.format("w%d-%s-%07d-", tid or 0, run, counter)
  local events = {}
  for i = 1, 50 do
    events[i] = string.format(
      '{"id":"%s%02d","type":"track","name":"task_created","anonymousId":"anon-%s","ts":%d,"props":{"plan":"trial","n":1}}',
      prefix, i, prefix, now)
  end
  local body = string.format('{"writeKey":"wk_demo","sentAt":%d,"events":[%s]}', now, table.concat(events, ","))
  return wrk.format(nil, "/v1/batch", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("requests=%d\n", summary.requests))
  io.write(string.format("seconds=%.3f\n", summary.duration / 1e6))
  io.write(string.format("non2xx=%d\n", summary.errors.status))
  io.write(string.format("socket_errors=%d\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("p50_ms=%.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("p99_ms=%.3f\n", latency:percentile(99) / 1000))
  io.write(string.format("max_ms=%.3f\n", latency.max / 1000))
end
