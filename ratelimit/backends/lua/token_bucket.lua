-- token_bucket: mirrors ratelimit/algorithms/token_bucket.py.
-- State: last update ms, tokens scaled by the period (a full bucket holds capacity * period).
ALGORITHMS[4] = function(state, now, cost, limit, period, capacity, fmt, extra)
  local full = capacity * period
  local tokens = full
  state = stored(state, fmt)
  if state then
    local last, saved = struct.unpack(fmt, state)
    if now < last then -- a clock that went back: no refill, no time travel
      now = last
    end
    tokens = saved + (now - last) * limit
    if tokens > full then
      tokens = full
    end
  end
  local need = cost * period
  if cost <= capacity and tokens >= need then
    tokens = tokens - need
    local reset = cdiv(full - tokens, limit)
    return struct.pack(fmt, now, tokens), 1, fdiv(tokens, period), reset, 0, 0, now + reset
  end
  local retry = -1
  if cost <= capacity then
    retry = cdiv(need - tokens, limit)
  end
  return nil, 0, fdiv(tokens, period), cdiv(full - tokens, limit), retry, 0, 0
end
