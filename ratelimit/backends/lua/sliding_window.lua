-- sliding_window: mirrors ratelimit/algorithms/sliding_window.py. State: window index,
-- previous count, current count, as one decimal number "<window><prev><curr>" (the counts
-- fmt digits wide; Redis stores it as an integer).
ALGORITHMS[2] = function(state, now, cost, limit, period, capacity, fmt, extra)
  local window = fdiv(now, period)
  local start = window * period
  local elapsed = now - start
  local prev, curr = 0, 0
  local digits = tonumber(fmt)
  state = decimal(state, 2 * digits)
  if state then
    local saved_window = tonumber(string.sub(state, 1, -2 * digits - 1))
    if saved_window == window then
      prev = tonumber(string.sub(state, -2 * digits, -digits - 1))
      curr = tonumber(string.sub(state, -digits))
    elseif saved_window == window - 1 then
      prev = tonumber(string.sub(state, -digits))
    end
  end
  local weight = period - elapsed
  local free = limit * period - prev * weight - curr * period
  local admitted = cost <= limit and cost * period <= free
  if admitted then
    curr = curr + cost
    free = free - cost * period
  end
  local reset = 0 -- fresh again once the current count has left the next window's weighting
  if curr > 0 then
    reset = start + 2 * period - now
  elseif prev > 0 then
    reset = start + period - now
  end
  if admitted then
    local packed = string.format('%d%0' .. digits .. 'd%0' .. digits .. 'd', window, prev, curr)
    return packed, 1, fdiv(free, period), reset, 0, 0, start + 2 * period
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
