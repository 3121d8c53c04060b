-- wrk script for benchmarks/flood.py: counts the responses by status class across every
-- wrk thread and prints "STATUSES <2xx> <429> <503> <other>" at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, limited, unavailable, other = 0, 0, 0, 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 429 then
    limited = limited + 1
  elseif status == 503 then
    unavailable = unavailable + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("ok")
    b = b + thread:get("limited")
    c = c + thread:get("unavailable")
    d = d + thread:get("other")
  end
  io.write(string.format("STATUSES %d %d %d %d\n", a, b, c, d))
end
