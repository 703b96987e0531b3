-- wrk script for bench/render.py: requests the paths listed in the file named by $PATHS, in
-- order, starting again at the end. Without REPEAT=1 every request past the end is reported
-- as "wrapped": the run outlasted its distinct paths, so those requests were cache hits.
-- No response() hook: running Lua for every response doubled wrk's CPU per request; wrk counts
-- answers that are not 2xx or 3xx by itself.

local paths = {}
for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
local again = os.getenv("REPEAT") == "1"
local i = 0
issued = 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function request()
  i = i % #paths + 1
  issued = issued + 1
  return wrk.format("GET", paths[i])
end

function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do
    if not again then wraps = wraps + math.max(0, t:get("issued") - #paths) end
  end
  local e = summary.errors
  io.write(string.format("summary %d %d %d %d %d %d %d %d\n", summary.requests,
    summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99), wraps,
    e.status, e.connect + e.read + e.write + e.timeout))
end
