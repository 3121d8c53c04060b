-- ratelimit: decide every limit of one request atomically (the dispatcher).
--
-- The algorithm files (fixed_window.lua, ...) are inserted where the marker below stands; each
-- mirrors ratelimit/algorithms/<name>.py exactly: integer milliseconds, tokens and levels
-- scaled by the period in ms, the same formulas. Lua numbers are doubles: every value is an
-- integer below 2^53 (the core checks limit * period_ms and burst * period_ms), and divisions
-- go through fdiv/cdiv, which correct the rounding of a / b.
--
-- KEYS[i]   the state of limit i: one string per key (all in one slot), packed with struct,
--           or a decimal number for the windows (which Redis then stores as an integer)
-- ARGV[1]   now in ms, or "" to use the Redis server clock (TIME)
-- ARGV[2]   cost (integer >= 1; 0 in a dry run: a probe of the state, Limiter.peek), or one
--           cost per limit, comma-separated (decide_each: rules with different costs)
-- ARGV[3]   "1" to store the new states when every limit admits, "0" for a dry run
-- ARGV[4]   extra ms added to every TTL (0 unless the caller's clock runs slower than real time)
-- ARGV[5..] six values per limit: algorithm code, limit, period ms, capacity, state format,
--           max wait (leaky bucket in shape mode: the largest scaled level to queue behind; -1)
--
-- Returns five values per limit: allowed (1/0), remaining, reset_after ms, retry_after ms
-- (-1 means never: the cost exceeds the capacity), delay (0, or seconds as a "%.17g" string).
-- Nothing is written unless every limit admits; every write sets a TTL of at least 1 ms.

local floor = math.floor

-- Redis ships the struct library; fakeredis (tests without a redis-server binary) does not:
-- this stand-in covers the only formats used here, big-endian unsigned ">I<n>I<n>...".
local struct = struct or (function()
  local function widths(fmt)
    local w = {}
    for n in string.gmatch(fmt, 'I(%d+)') do
      w[#w + 1] = tonumber(n)
    end
    return w
  end
  local function size(fmt)
    local total = 0
    for _, n in ipairs(widths(fmt)) do
      total = total + n
    end
    return total
  end
  local function pack(fmt, ...)
    local values, out = {...}, {}
    for i, n in ipairs(widths(fmt)) do
      local v, bytes = values[i], {}
      for j = n, 1, -1 do
        bytes[j] = string.char(v % 256)
        v = floor(v / 256)
      end
      out[i] = table.concat(bytes)
    end
    return table.concat(out)
  end
  local function unpack(fmt, s, pos)
    pos = pos or 1
    local values = {}
    for i, n in ipairs(widths(fmt)) do
      local v = 0
      for j = pos, pos + n - 1 do
        v = v * 256 + string.byte(s, j)
      end
      values[i] = v
      pos = pos + n
    end
    values[#values + 1] = pos
    return (table.unpack or _G.unpack)(values)
  end
  return {size = size, pack = pack, unpack = unpack}
end)()

-- floor(a / b) for integers a and b > 0, exact despite the rounding of the double quotient
local function fdiv(a, b)
  local q = floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- ceil(a / b) for integers a and b > 0
local function cdiv(a, b)
  return -fdiv(-a, b)
end

-- a stored state, or false when missing or not of this format (a renamed limit's old state)
local function stored(state, fmt)
  if state and #state == struct.size(fmt) then
    return state
  end
  return false
end

-- a stored decimal state "<digits>...<width digits>", or false (missing or another format)
local function decimal(state, width)
  if state and #state > width and not string.find(state, '%D') then
    return state
  end
  return false
end

local ALGORITHMS = {}

-- @algorithms

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
-- one cost for every limit, or the cost of each limit in order: "1,5,1" (decide_each)
local costs = {}
if string.find(ARGV[2], ',', 1, true) then
  for c in string.gmatch(ARGV[2], '[^,]+') do
    costs[#costs + 1] = tonumber(c)
  end
else
  local c = tonumber(ARGV[2])
  for i = 1, #KEYS do
    costs[i] = c
  end
end
local consume = ARGV[3] == '1'
local pad = tonumber(ARGV[4])

local out = {}
local states = {}
local expiries = {}
local admitted = true
for i = 1, #KEYS do
  local b = 4 + (i - 1) * 6
  local step = ALGORITHMS[tonumber(ARGV[b + 1])]
  local new, allowed, remaining, reset, retry, delay, expires = step(
    redis.call('GET', KEYS[i]), now, costs[i], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]),
    tonumber(ARGV[b + 4]), ARGV[b + 5], tonumber(ARGV[b + 6]))
  if allowed == 0 then
    admitted = false
  end
  local o = (i - 1) * 5
  out[o + 1] = allowed
  out[o + 2] = remaining
  out[o + 3] = reset
  out[o + 4] = retry
  out[o + 5] = delay
  states[i] = new
  expiries[i] = expires
end

if consume and admitted then
  for i = 1, #KEYS do
    local ttl = expiries[i] - now
    if ttl < 1 then
      ttl = 1
    end
    redis.call('SET', KEYS[i], states[i], 'PX', ttl + pad)
  end
end
return out
