-- wrk script of the auth-overhead benchmark (bench/auth_overhead.py).
--
--   wrk ... -s auth_notes.lua <url> -- public <data.lua>  GET /api/v1/sample/public-notes/<id>, X-Tenant only
--   wrk ... -s auth_notes.lua <url> -- auth <data.lua>    GET /api/v1/sample/notes/<id>, X-Tenant + member's bearer token
--   wrk ... -s auth_notes.lua <url> -- login <data.lua>   POST /api/v1/auth/login of a random member
-- The data file returns {slugs=, note_ids=, tokens=, emails=, password=}; tokens[i] and emails[i]
-- belong to tenant slugs[i]. done() prints "BENCH_JSON {...}" like random_notes.lua.

local data, count
local mode = "public"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  mode = args[1] or "public"
  data = dofile(args[2])
  count = #data.note_ids
  math.randomseed(os.time() * 1000 + (thread_number or 0) * 7919)
end

function request()
  local i = math.random(count)
  if mode == "login" then
    local body = '{"email": "' .. data.emails[i] .. '", "password": "' .. data.password .. '"}'
    return wrk.format("POST", "/api/v1/auth/login",
      { ["X-Tenant"] = data.slugs[i], ["Content-Type"] = "application/json" }, body)
  end
  if mode == "auth" then
    return wrk.format("GET", "/api/v1/sample/notes/" .. data.note_ids[i],
      { ["X-Tenant"] = data.slugs[i], ["Authorization"] = "Bearer " .. data.tokens[i] })
  end
  return wrk.format("GET", "/api/v1/sample/public-notes/" .. data.note_ids[i], { ["X-Tenant"] = data.slugs[i] })
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
