-- wrk script for benchmarks/http.py. With an argument (wrk ... URL -- N): stop after exactly
-- N responses and print "DONE <responses> <non-2xx responses>" (the server's CPU per request
-- is counted over a fixed number of requests). Without one: run for wrk's -d duration and
-- print the same line at the end.
local limit, count, bad = 0, 0, 0

function init(args)
  limit = tonumber(args[1]) or 0
end

function response(status, headers, body)
  count = count + 1
  if status >= 300 then
    bad = bad + 1
  end
  if limit > 0 and count >= limit then
    io.write(string.format("DONE %d %d\n", count, bad))
    io.flush()
    os.exit(0)
  end
end

function done(summary, latency, requests)
  io.write(string.format("DONE %d %d\n", summary.requests, summary.errors.status))
end
