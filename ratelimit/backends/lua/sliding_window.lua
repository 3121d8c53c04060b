-- sliding_window: mirrors ratelimit/algorithms/sliding_window.py.
-- State: window index, previous count, current count.
ALGORITHMS[2] = function(state, now, cost, limit, period, capacity, fmt, extra)
  local window = fdiv(now, period)
  local start = window * period
  local elapsed = now - start
  local prev, curr = 0, 0
  state = stored(state, fmt)
  if state then
    local saved_window, saved_prev, saved_curr = struct.unpack(fmt, state)
    if saved_window == window then
      prev, curr = saved_prev, saved_curr
    elseif saved_window == window - 1 then
      prev = saved_curr
    end
  end
  local weight = period - elapsed
  local free = limit * period - prev * weight - curr * period
  if cost <= limit and cost * period <= free then
    curr = curr + cost
    free = free - cost * period
    return struct.pack(fmt, window, prev, curr), 1, fdiv(free, period),
      start + 2 * period - now, 0, 0, start + 2 * period
  end
  local reset = 0
  if curr > 0 then
    reset = start + 2 * period - now
  elseif prev > 0 then
    reset = start + period - now
  end
  local retry
  if cost > limit then
    retry = -1
  elseif curr + cost <= limit then
    retry = start + period - fdiv((limit - curr - cost) * period, prev) - now
  else
    retry = start + 2 * period - fdiv((limit - cost) * period, curr) - now
  end
  local remaining = fdiv(free, period)
  if remaining < 0 then
    remaining = 0
  end
  return nil, 0, remaining, reset, retry, 0, 0
end
