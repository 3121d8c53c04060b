-- sliding_log: mirrors ratelimit/algorithms/sliding_log.py. State: the admission times,
-- run-length encoded as (time, units) records, oldest first (the Python tuple repeats a time
-- once per unit of cost; the decisions only depend on that multiset). Read in place, record
-- by record (no tables).
local width = struct.size(fmt)
span = period + 2 -- reset and retry stay below period + 1
local size = 0
if state and #state % width == 0 then
  size = #state
end
local newest, units = 0, 0 -- the last record
if size > 0 then
  newest, units = struct.unpack(fmt, state, size - width + 1)
  if newest > now then -- a clock that went back: never reorder the log
    now = newest
  end
end
local cutoff = now - period -- records at or before it have expired
local first = size + 1 -- where the live records start
local used = 0
for pos = 1, size, width do
  local t, c = struct.unpack(fmt, state, pos)
  if t > cutoff then
    if first > size then
      first = pos
    end
    used = used + c
  end
end
if cost <= limit and used + cost <= limit then
  if first > size then
    new = struct.pack(fmt, now, cost)
  elseif newest == now then
    new = sub(state, first, -width - 1) .. struct.pack(fmt, now, units + cost)
  else
    new = sub(state, first) .. struct.pack(fmt, now, cost)
  end
  reset = period
  if cost == 0 then -- a cost-0 probe (Limiter.peek): the newest live entry decides
    reset = 0
    if first <= size then
      reset = newest + period - now
    end
  end
  allowed, remaining, expires = 1, limit - used - cost, now + period
else
  reset = 0
  if first <= size then
    reset = newest + period - now
  end
  retry = -1
  if cost <= limit then
    -- the (used - (limit - cost))-th oldest unit must leave the window first
    local k = used - (limit - cost)
    local seen, t, c = 0, 0, 0
    local pos = first
    while seen < k do
      t, c = struct.unpack(fmt, state, pos)
      seen = seen + c
      pos = pos + width
    end
    retry = t + period - now
  end
  remaining = limit - used
end
