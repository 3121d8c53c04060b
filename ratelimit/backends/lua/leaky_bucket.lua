-- leaky_bucket: mirrors ratelimit/algorithms/leaky_bucket.py.
-- State: last update ms, level scaled by the period. Code 5 shapes (delays), 6 polices.
local function leaky(shape, state, now, cost, limit, period, capacity, fmt, max_wait)
  local full = capacity * period
  local level = 0
  state = stored(state, fmt)
  if state then
    local last, saved = struct.unpack(fmt, state)
    if now < last then -- a clock that went back: no drain, no time travel
      now = last
    end
    level = saved - (now - last) * limit
    if level < 0 then
      level = 0
    end
  end
  local need = cost * period
  -- (a cost-0 probe, Limiter.peek, queues nothing: max_delay does not apply to it)
  if cost <= capacity and level + need <= full and (max_wait < 0 or level <= max_wait or cost == 0) then
    local delay = 0
    if shape and level > 0 then
      delay = string.format('%.17g', level / (limit * 1000))
    end
    level = level + need
    local reset = cdiv(level, limit)
    return struct.pack(fmt, now, level), 1, fdiv(full - level, period), reset, 0, delay,
      now + reset
  end
  local retry = -1
  if cost <= capacity then
    local wait = level + need - full
    if wait < 0 then
      wait = 0
    end
    if max_wait >= 0 and level - max_wait > wait then
      wait = level - max_wait
    end
    retry = cdiv(wait, limit)
  end
  return nil, 0, fdiv(full - level, period), cdiv(level, limit), retry, 0, 0
end

ALGORITHMS[5] = function(state, now, cost, limit, period, capacity, fmt, max_wait)
  return leaky(true, state, now, cost, limit, period, capacity, fmt, max_wait)
end

ALGORITHMS[6] = function(state, now, cost, limit, period, capacity, fmt, max_wait)
  return leaky(false, state, now, cost, limit, period, capacity, fmt, max_wait)
end
