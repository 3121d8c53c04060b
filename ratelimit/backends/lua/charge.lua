-- ratelimit: charge (or give back) units to every limit of one request atomically, after its
-- response, even past the limit: the excess is a debt. Mirrors the charge() of
-- ratelimit/algorithms/<name>.py (fixed window, sliding window, token and leaky bucket), and
-- reads and writes the states as decide.lua does; a window's debt is the text
-- "d<window>:<count>" (fixed) or "d<window>:<prev>:<curr>" (sliding), which decide.lua reads.
--
-- KEYS[i]   the state of limit i
-- ARGV[1]   now in ms, or "" to use the Redis server clock (TIME)
-- ARGV[2]   delta: units to add, or (negative) to give back
-- ARGV[3]   ms since the request was decided (a give-back lands only in its window)
-- ARGV[4]   extra ms added to every TTL
-- ARGV[4+i] limit i, packed with struct as for decide.lua
-- Returns the number of states written.

local floor, sub, format, unpack = math.floor, string.sub, string.format, struct.unpack
local SPEC = '>BddddBc0'
-- @divide

local clock
if ARGV[1] == '' then
  local t = redis.call('TIME')
  clock = t[1] * 1000 + floor(t[2] / 1000)
else
  clock = tonumber(ARGV[1])
end
local now, delta, pad = clock, tonumber(ARGV[2]), tonumber(ARGV[4])
local since = clock - tonumber(ARGV[3])
local written = 0

-- the window of `t` (a double quotient may round up to the next integer)
local function window_of(t, period)
  local w = floor(t / period)
  if w * period > t then
    w = w - 1
  end
  return w
end

for i = 1, #KEYS do
  local code, limit, period, capacity, _, fmt = unpack(SPEC, ARGV[i + 4])
  local state = redis.call('GET', KEYS[i])
  local full = capacity * period
  -- the most units a key may owe (ratelimit.algorithms.debt_cap)
  local most = fdiv(4503599627370496 - full, period)
  if most > 1000 * capacity then
    most = 1000 * capacity
  elseif most < 0 then
    most = 0
  end
  local d = delta
  if d > most then
    d = most
  elseif d < -capacity - most then
    d = -capacity - most
  end
  local new, expires
  if code == 4 then -- token bucket: tokens below zero kept as an empty bucket, time ahead
    local tokens = full
    if state and #state == struct.size(fmt) then
      local last, saved = unpack(fmt, state)
      tokens = saved + (now - last) * limit
      if tokens > full then
        tokens = full
      end
    end
    tokens = tokens - d * period
    if tokens > full then
      tokens = full
    elseif tokens < -most * period then
      tokens = -most * period
    end
    local at = now
    if tokens < 0 then
      local ahead = cdiv(-tokens, limit)
      at, tokens = now + ahead, tokens + ahead * limit
      if tokens > full then -- less than a millisecond's refill: the debt rounded up
        tokens = full
      end
    end
    new, expires = struct.pack(fmt, at, tokens), at + cdiv(full - tokens, limit)
  elseif code == 5 or code == 6 then -- leaky bucket: a level above the burst, time ahead
    local level = 0
    if state and #state == struct.size(fmt) then
      local last, saved = unpack(fmt, state)
      level = saved - (now - last) * limit
      if level < 0 then
        level = 0
      end
    end
    level = level + d * period
    if level < 0 then
      level = 0
    elseif level > full + most * period then
      level = full + most * period
    end
    local at = now
    if level > full then
      local ahead = cdiv(level - full, limit)
      at, level = now + ahead, level - ahead * limit
      if level < 0 then -- a burst below a millisecond's drain: the debt rounded up
        level = 0
      end
    end
    new, expires = struct.pack(fmt, at, level), at + cdiv(level, limit)
  elseif code == 1 or code == 2 then -- the windows: a count above the limit, carried on
    local window = window_of(now, period)
    local scale = 10 -- = fmt: the least power of 10 above the limit
    while scale <= limit do
      scale = scale * 10
    end
    local digits = #fmt - 1
    local prev, curr = 0, 0
    if state and string.byte(state) == 100 then -- a debt
      -- @include carried.lua
    elseif state and code == 1 then -- as fixed_window.lua stores it
      local base = window * scale
      if base + scale <= 9007199254740992 then
        local v = tonumber(state)
        if v and v >= base and v < base + scale then
          curr = v - base
        end
      elseif tonumber(sub(state, 1, -#fmt)) == window then
        curr = tonumber(sub(state, 1 - #fmt)) or 0
      end
    elseif state then -- as sliding_window.lua stores it
      local square = scale * scale
      local saved, p, c
      if (window + 1) * square <= 9007199254740992 then
        local v = tonumber(state)
        if v then
          saved = fdiv(v, square)
          local rest = v - saved * square
          p = fdiv(rest, scale)
          c = rest - p * scale
        end
      elseif #state > 2 * digits then
        saved = tonumber(sub(state, 1, -2 * digits - 1))
        p = tonumber(sub(state, -2 * digits, -digits - 1)) or 0
        c = tonumber(sub(state, -digits)) or 0
      end
      if saved == window then
        prev, curr = p, c
      elseif saved == window - 1 then
        prev = c
      end
    end
    if code == 1 then
      prev = 0
    end
    if d < 0 then
      if window_of(since, period) == window then
        curr = curr + d
        if curr < 0 then
          curr = 0
        end
      else
        fmt = nil -- the request's window has ended: its count stays
      end
    else
      curr = curr + d
      if curr > limit + most then
        curr = limit + most
      end
    end
    if fmt == nil then
      new = nil
    elseif code == 1 then
      if curr <= limit then
        if window * scale + scale <= 9007199254740992 then
          new = window * scale + curr
        else
          new = format('%d%0' .. digits .. 'd', window, curr)
        end
        expires = (window + 1) * period
      else
        new = format('d%d:%d', window, curr)
        expires = (window + cdiv(curr, limit)) * period
      end
    elseif curr <= limit then
      if (window + 1) * scale * scale <= 9007199254740992 then
        new = (window * scale + prev) * scale + curr
      else
        local dd = '%0' .. digits .. 'd'
        new = format('%d' .. dd .. dd, window, prev, curr)
      end
      expires = (window + 2) * period
    else
      new = format('d%d:%d:%d', window, prev, curr)
      expires = (window + cdiv(curr, limit) + 1) * period
    end
  end
  if new then
    local ttl = expires - clock
    if ttl < 1 then
      ttl = 1
    end
    redis.call('SET', KEYS[i], new, 'PX', ttl + pad)
    written = written + 1
  end
end
return written
