-- wrk script for benchmarks/http.py: stop after exactly N responses (wrk ... URL -- N) and
-- print "DONE <responses> <non-2xx responses>" (the server's CPU per request is counted
-- over a fixed number of requests, not a fixed time).
local limit, done, bad = 0, 0, 0

function init(args)
  limit = tonumber(args[1])
end

function response(status, headers, body)
  done = done + 1
  if status >= 300 then
    bad = bad + 1
  end
  if done >= limit then
    io.write(string.format("DONE %d %d\n", done, bad))
    io.flush()
    os.exit(0)
  end
end
