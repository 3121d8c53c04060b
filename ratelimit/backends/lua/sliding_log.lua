-- sliding_log: mirrors ratelimit/algorithms/sliding_log.py. State: the admission times,
-- run-length encoded as (time, units) records, oldest first (the Python tuple repeats a time
-- once per unit of cost; the decisions only depend on that multiset).
local width = struct.size(fmt)
local times, counts, n = {}, {}, 0
if state and #state % width == 0 then
  for pos = 1, #state, width do
    n = n + 1
    times[n], counts[n] = struct.unpack(fmt, state, pos)
  end
end
if n > 0 and times[n] > now then -- a clock that went back: never reorder the log
  now = times[n]
end
local first = 1 -- entries at or before now - period have expired
local cutoff = now - period
while first <= n and times[first] <= cutoff do
  first = first + 1
end
local used = 0
for i = first, n do
  used = used + counts[i]
end
if cost <= limit and used + cost <= limit then
  if first > n then
    new = struct.pack(fmt, now, cost)
  elseif times[n] == now then
    new = sub(state, (first - 1) * width + 1, -width - 1) .. struct.pack(fmt, now, counts[n] + cost)
  else
    new = sub(state, (first - 1) * width + 1) .. struct.pack(fmt, now, cost)
  end
  reset = period
  if cost == 0 then -- a cost-0 probe (Limiter.peek): the newest live entry decides
    reset = 0
    if first <= n then
      reset = times[n] + period - now
    end
  end
  allowed, remaining, expires = 1, limit - used - cost, now + period
else
  reset = 0
  if first <= n then
    reset = times[n] + period - now
  end
  retry = -1
  if cost <= limit then
    -- the (used - (limit - cost))-th oldest unit must leave the window first
    local k = used - (limit - cost)
    local i = first
    local seen = counts[i]
    while seen < k do
      i = i + 1
      seen = seen + counts[i]
    end
    retry = times[i] + period - now
  end
  remaining = limit - used
end
