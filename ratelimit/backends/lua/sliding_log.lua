-- sliding_log: mirrors ratelimit/algorithms/sliding_log.py. State: the admission times,
-- run-length encoded as (time, units) records, oldest first (the Python tuple repeats a time
-- once per unit of cost; the decisions only depend on that multiset).
ALGORITHMS[3] = function(state, now, cost, limit, period, capacity, fmt, extra)
  local width = struct.size(fmt)
  local times, counts, n = {}, {}, 0
  if state and #state % width ~= 0 then
    state = false
  end
  if state then
    for pos = 1, #state, width do
      local t, c = struct.unpack(fmt, state, pos)
      n = n + 1
      times[n] = t
      counts[n] = c
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
    local kept = ''
    if first <= n then
      kept = string.sub(state, (first - 1) * width + 1)
    end
    local new
    if first <= n and times[n] == now then
      new = string.sub(kept, 1, #kept - width) .. struct.pack(fmt, now, counts[n] + cost)
    else
      new = kept .. struct.pack(fmt, now, cost)
    end
    local reset = period
    if cost == 0 then -- a cost-0 probe (Limiter.peek): the newest live entry decides
      reset = 0
      if first <= n then
        reset = times[n] + period - now
      end
    end
    return new, 1, limit - used - cost, reset, 0, 0, now + period
  end
  local reset = 0
  if first <= n then
    reset = times[n] + period - now
  end
  local retry = -1
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
  return nil, 0, limit - used, reset, retry, 0, 0
end
