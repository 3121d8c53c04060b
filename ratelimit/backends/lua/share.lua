-- ratelimit: shares of limits (ratelimit/backends/shares.py; this mirrors grant() and
-- give_back() there exactly: integer ms, tokens scaled by the period).
--
-- KEYS[i]   the share state of item i, text "gen seq a b c d" (shares.State)
-- ARGV[1]   now in ms, or "" for the Redis server clock (TIME)
-- ARGV[2]   "g" grant (all items admit, then every grant is stored, or nothing is),
--           "p" probe (decide, store nothing), "r" give unused units back
-- ARGV[3]   extra ms added to every TTL
-- ARGV[4..] per item: code (1 fixed window, 2 sliding window, 4 bucket as tokens), limit,
--           period ms, capacity, hold ms (buckets), then g/p: cost, want; r: tag, gen, seq,
--           units
--
-- Returns (g/p) one text row per item: "allowed remaining reset retry granted life tag gen
-- seq"; (r) one integer per item: 1 given back, 0 refused.

local floor, format = math.floor, string.format
local t = redis.call('TIME')
local clock = ARGV[1] == '' and (t[1] * 1000 + floor(t[2] / 1000)) or tonumber(ARGV[1])
local fresh_gen = t[1] * 1000000 + t[2]
local mode, pad = ARGV[2], tonumber(ARGV[3])
local SHRINK = 8

-- @divide (fdiv and cdiv: lua/divide.lua, put here when the script is loaded)

local function load(key)
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local s = {}
  for v in string.gmatch(raw, '%S+') do
    s[#s + 1] = tonumber(v)
  end
  return s
end

local function store(key, s, expires)
  local ttl = expires - clock
  if ttl < 1 then
    ttl = 1
  end
  redis.call('SET', key, format('%d %d %d %d %d %d', s[1], s[2], s[3], s[4], s[5], s[6]),
    'PX', ttl + pad)
end

-- grant(): allowed, remaining, reset, retry, granted, end, tag, new state, expires
local function grant(code, limit, period, capacity, hold, state, now, cost, want)
  local seq, gen = 1, fresh_gen
  if state then
    seq, gen = state[2] + 1, state[1]
  end
  if code == 1 then
    local window = fdiv(now, period)
    local count = 0
    if state and state[3] == window then
      count = state[4]
    end
    local stop = (window + 1) * period
    local reset = stop - now
    if cost <= limit and count + cost <= limit then
      local extra = 0
      if want > cost then
        extra = math.min(want - cost, fdiv(limit - count - cost, SHRINK))
      end
      count = count + cost + extra
      if count == 0 then
        reset = 0
      end
      return 1, limit - count, reset, 0, cost + extra, stop, window,
        {gen, seq, window, count, 0, 0}, stop
    end
    local retry = reset
    if cost > limit then
      retry = -1
    end
    if count == 0 then
      reset = 0
    end
    return 0, limit - count, reset, retry, 0, stop, window, nil, 0
  end
  if code == 2 then
    local window = fdiv(now, period)
    local start = window * period
    local elapsed = now - start
    local prev, curr = 0, 0
    if state then
      if state[3] == window then
        prev, curr = state[4], state[5]
      elseif state[3] == window - 1 then
        prev = state[5]
      end
    end
    local free = limit * period - prev * (period - elapsed) - curr * period
    local stop = start + period
    local reset
    if cost * period <= free then
      local extra = math.min(want - cost, fdiv(free - cost * period, SHRINK * period))
      if extra < 0 then
        extra = 0
      end
      curr = curr + cost + extra
      free = free - (cost + extra) * period
      local expires = start + period
      if curr > 0 then
        reset, expires = start + 2 * period - now, start + 2 * period
      elseif prev > 0 then
        reset = stop - now
      else
        reset = 0
      end
      return 1, fdiv(free, period), reset, 0, cost + extra, stop, window,
        {gen, seq, window, prev, curr, 0}, expires
    end
    if curr > 0 then
      reset = start + 2 * period - now
    elseif prev > 0 then
      reset = stop - now
    else
      reset = 0
    end
    local retry
    if cost > limit then
      retry = -1
    elseif curr + cost <= limit then
      retry = stop - fdiv((limit - curr - cost) * period, prev) - now
    else
      retry = start + 2 * period - fdiv((limit - cost) * period, curr) - now
    end
    return 0, math.max(0, fdiv(free, period)), reset, retry, 0, stop, window, nil, 0
  end
  -- the buckets, as tokens scaled by the period
  local full = capacity * period
  local ahead, tokens = 0, full
  if state then
    local last, saved, epoch = state[3], state[4], state[5]
    ahead = state[6]
    if now < last then -- a clock that went back: no refill, no time travel
      now = last
    end
    if epoch ~= fdiv(now, hold) then
      ahead = 0
    end
    tokens = math.min(full - ahead * period, saved + (now - last) * limit)
  end
  local epoch = fdiv(now, hold)
  local stop = (epoch + 1) * hold
  local need = cost * period
  local reset
  if cost <= capacity and tokens >= need then
    local extra = 0
    if want > cost then
      extra = math.min(want - cost, fdiv(tokens - need, SHRINK * period))
    end
    tokens = tokens - need - extra * period
    ahead = ahead + extra
    reset = cdiv(full - tokens, limit)
    local expires = now + reset
    if ahead > 0 then
      reset = math.max(reset, stop - now)
      expires = math.max(expires, stop)
    end
    return 1, fdiv(tokens, period), reset, 0, cost + extra, stop, epoch,
      {gen, seq, now, tokens, epoch, ahead}, expires
  end
  reset = cdiv(full - tokens, limit)
  if ahead > 0 then
    reset = math.max(reset, stop - now)
  end
  local retry
  if cost > capacity then
    retry = -1
  elseif need <= full - ahead * period then
    retry = cdiv(need - tokens, limit)
  else -- the cap lifts when the epoch ends
    local wait = stop - now
    local at_end = math.min(full - ahead * period, tokens + wait * limit)
    retry = wait + cdiv(math.max(0, need - at_end), limit)
  end
  return 0, fdiv(tokens, period), reset, retry, 0, stop, epoch, nil, 0
end

-- give_back(): the new state and its expiry, or nil
local function give_back(code, limit, period, capacity, hold, state, now, units, tag, gen, seq)
  if not state or state[1] ~= gen or state[2] < seq then
    return nil
  end
  if code == 1 or code == 2 then
    local window = fdiv(now, period)
    if state[3] ~= window or tag ~= window then
      return nil
    end
    if code == 1 then
      local count = state[4] - math.min(units, state[4])
      return {state[1], state[2], window, count, 0, 0}, (window + 1) * period
    end
    local curr = state[5] - math.min(units, state[5])
    local expires = (window + 1) * period
    if curr > 0 then
      expires = (window + 2) * period
    end
    return {state[1], state[2], window, state[4], curr, 0}, expires
  end
  local full = capacity * period
  local last, tokens, epoch, ahead = state[3], state[4], state[5], state[6]
  now = math.max(now, last)
  if epoch ~= fdiv(now, hold) or tag ~= epoch then
    return nil
  end
  local back = math.min(units, ahead)
  tokens = math.min(full - ahead * period, tokens + (now - last) * limit) + back * period
  ahead = ahead - back
  local expires = now + cdiv(full - tokens, limit)
  if ahead > 0 then
    expires = math.max(expires, (epoch + 1) * hold)
  end
  return {state[1], state[2], now, tokens, epoch, ahead}, expires
end

local out = {}
if mode == 'r' then
  for i = 1, #KEYS do
    local b = 3 + (i - 1) * 9
    local new, expires = give_back(tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]),
      tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), load(KEYS[i]), clock,
      tonumber(ARGV[b + 9]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]),
      tonumber(ARGV[b + 8]))
    out[i] = 0
    if new then
      store(KEYS[i], new, expires)
      out[i] = 1
    end
  end
  return out
end

local states, expiries = {}, {}
local admitted = true
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 7
  local allowed, remaining, reset, retry, got, stop, tag, new, expires = grant(
    tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]),
    tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), load(KEYS[i]), clock,
    tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]))
  if allowed == 0 then
    admitted = false
  end
  states[i], expiries[i] = new, expires
  local gen, seq = 0, 0
  if new then
    gen, seq = new[1], new[2]
  end
  out[i] = format('%d %d %d %d %d %d %d %d %d', allowed, remaining, reset, retry, got,
    stop - clock, tag, gen, seq)
end
if mode == 'g' and admitted then
  for i = 1, #KEYS do
    store(KEYS[i], states[i], expiries[i])
  end
end
return out
