-- wrk script of the kernel-read benchmark: GET a random (tenant, note) pair on every request.
--
-- bench/run.py writes the pairs (a Lua file returning {slugs=, tenant_ids=, note_ids=}) and runs
--   wrk ... -s random_notes.lua <url> -- full <pairs.lua>  (GET /api/v1/sample/public-notes/<id>, X-Tenant: <slug>)
--   wrk ... -s random_notes.lua <url> -- bare <pairs.lua>  (GET /notes/<tenant id>/<id>)
-- done() prints one line "BENCH_JSON {...}" with throughput, errors and latency percentiles (us).

local slugs, tenant_ids, note_ids, count
local mode = "full"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  mode = args[1] or "full"
  local data = dofile(args[2])
  slugs, tenant_ids, note_ids, count = data.slugs, data.tenant_ids, data.note_ids, #data.note_ids
  -- Each thread its own sequence, so threads do not request the same rows in lock step.
  math.randomseed(os.time() * 1000 + (thread_number or 0) * 7919)
end

function request()
  local i = math.random(count)
  if mode == "bare" then
    return wrk.format("GET", "/notes/" .. tenant_ids[i] .. "/" .. note_ids[i])
  end
  return wrk.format("GET", "/api/v1/sample/public-notes/" .. note_ids[i], { ["X-Tenant"] = slugs[i] })
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d}, "latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, '
      .. '"p50": %d, "p75": %d, "p90": %d, "p99": %d, "p99.9": %d}}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
  )
  io.write("BENCH_JSON " .. out .. "\n")
end
