-- fixed_window: mirrors ratelimit/algorithms/fixed_window.py. State: window index, count.
ALGORITHMS[1] = function(state, now, cost, limit, period, capacity, fmt, extra)
  local window = fdiv(now, period)
  local count = 0
  state = stored(state, fmt)
  if state then
    local saved_window, saved_count = struct.unpack(fmt, state)
    if saved_window == window then
      count = saved_count
    end
  end
  local reset = (window + 1) * period - now
  if cost <= limit and count + cost <= limit then
    count = count + cost
    return struct.pack(fmt, window, count), 1, limit - count, reset, 0, 0, (window + 1) * period
  end
  local retry = reset
  if cost > limit then
    retry = -1
  end
  if count == 0 then
    reset = 0
  end
  return nil, 0, limit - count, reset, retry, 0, 0
end
