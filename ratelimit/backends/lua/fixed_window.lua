-- fixed_window: mirrors ratelimit/algorithms/fixed_window.py. State: window index, count,
-- as one decimal number "<window><count, fmt digits>" (Redis stores it as an integer).
ALGORITHMS[1] = function(state, now, cost, limit, period, capacity, fmt, extra)
  local window = fdiv(now, period)
  local count = 0
  local digits = tonumber(fmt)
  state = decimal(state, digits)
  if state then
    if tonumber(string.sub(state, 1, -digits - 1)) == window then
      count = tonumber(string.sub(state, -digits))
    end
  end
  local reset = (window + 1) * period - now
  if cost <= limit and count + cost <= limit then
    count = count + cost
    if count == 0 then -- a cost-0 probe of a fresh key (Limiter.peek)
      reset = 0
    end
    return string.format('%d%0' .. digits .. 'd', window, count), 1, limit - count, reset, 0, 0,
      (window + 1) * period
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
