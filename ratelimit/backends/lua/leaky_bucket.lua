-- leaky_bucket: mirrors ratelimit/algorithms/leaky_bucket.py. State: last update ms, level
-- scaled by the period. Shapes (delays admitted requests) unless `police` is set; `extra` is
-- the largest scaled level to queue behind (max_delay), or -1.
local full = capacity * period
span = cdiv(full, limit) + 2 -- reset and retry stay below this - 1 (but for a debt)
-- A state whose time is ahead of now (a debt above the burst after a charge, or another
-- clock ahead of this one) holds its level plus the drain until then, and is written back at
-- its own time.
local level, shift = 0, 0
if state and #state == struct.size(fmt) then
  local last, saved = struct.unpack(fmt, state)
  if now < last then
    shift = (last - now) * limit
    level = saved + shift
  else
    level = saved - (now - last) * limit
    if level < 0 then
      level = 0
    end
  end
end
local need = cost * period
-- (a cost-0 probe, Limiter.peek, queues nothing: max_delay does not apply to it)
if cost <= capacity and level + need <= full and (extra < 0 or level <= extra or cost == 0) then
  if not police and level > 0 then
    -- level / limit first: both are exact below 2^53, limit * 1000 may not be (Python's
    -- integers are), so this order rounds alike on both sides
    delay = format('%.17g', level / limit / 1000)
  end
  level = level + need
  reset = cdiv(level, limit)
  new = struct.pack(fmt, now + shift / limit, level - shift)
  allowed, expires = 1, now + reset
else
  retry = -1
  if cost <= capacity then
    local wait = level + need - full
    if wait < 0 then
      wait = 0
    end
    if extra >= 0 and level - extra > wait then
      wait = level - extra
    end
    retry = cdiv(wait, limit)
  end
  reset = cdiv(level, limit)
end
if level < full then
  remaining = fdiv(full - level, period)
end
