-- ratelimit: decide every limit of one request atomically.
--
-- ratelimit/backends/redis_script.py builds the script from this file: the algorithm files
-- (fixed_window.lua, ...) are blocks of code inserted where "-- @algorithms" stands, as the
-- branches of one if/elseif on the algorithm code (no functions to build per call, no
-- dispatch table). Each block mirrors ratelimit/algorithms/<name>.py exactly: integer
-- milliseconds, tokens and levels scaled by the period in ms, the same formulas. Lua numbers
-- are doubles: every value is an integer below 2^53 (the core checks limit * period_ms and
-- burst * period_ms), and divisions go through fdiv/cdiv (divide.lua, put at the top of the
-- blocks that use them), which correct the rounding of a / b.
--
-- A block reads   state (the key's value, or false), now, cost, limit, period, fmt (state
--                 format), police, and capacity and extra (max wait) when it needs them
-- and sets        allowed (1/0), remaining, reset, retry, delay, and when it admits: new
--                 (the state to store), expires (when that state is fresh again, ms) and
--                 keep (true when the key's TTL already ends at expires: SET ... KEEPTTL),
--                 add (true when, besides, the key holds a number and new is that number
--                 plus cost: INCRBY, which keeps the TTL and converts no number to text);
--                 and span, 2 more than the largest reset or retry it can give (the reply;
--                 a debt can make them larger: then the reply is the text form).
--
-- The blocks appear twice: in the one-limit path (most decisions: no tables, no loop) and
-- in the loop over several limits.
--
-- KEYS[i]   the state of limit i: one string per key (all in one slot), packed with struct,
--           or a decimal number for the windows (which Redis then stores as an integer)
-- ARGV[1]   now in ms, or "" to use the Redis server clock (TIME)
-- ARGV[2]   cost (integer >= 1; 0 in a dry run: a probe of the state, Limiter.peek), or one
--           cost per limit, comma-separated (decide_each: rules with different costs)
-- ARGV[3]   "1" to store the new states when every limit admits, "0" for a dry run
-- ARGV[4]   extra ms added to every TTL (0 unless the caller's clock runs slower than real time)
-- ARGV[4+i] limit i, packed with struct (SPEC): algorithm code, limit, period ms, capacity,
--           max wait (leaky bucket in shape mode: the largest scaled level to queue behind;
--           -1), all integers below 2^53 as doubles, then the state format (length, text).
--           One binary argument per limit, not six texts: each argument costs Redis (parsing,
--           the ARGV table) and the client (redis-py encodes each one), and a text number
--           costs a strtod to read.
--
-- Returns, per limit, one integer when it fits below 2^53 (converting numbers to text is
-- what costs most in a script) and there is no delay: remaining * span + reset when
-- admitted, -1 - ((remaining * span + reset) * span + retry + 1) when not; otherwise a string
-- of five values separated by spaces: allowed (1/0), remaining, reset_after ms, retry_after
-- ms (-1 means never: the cost exceeds the capacity), delay (0, or seconds as "%.17g").
-- One limit: that value; several: a table of them. (redis_script.decode reads both forms.)
-- Nothing is written unless every limit admits; every written key has a TTL of at least 1 ms
-- (set by the write, or kept from the write that started the same window).

local floor, sub, format, unpack = math.floor, string.sub, string.format, struct.unpack
local SPEC = '>BddddBc0' -- a limit's argument (redis_script.LimitSpec)

local clock
if ARGV[1] == '' then
  local t = redis.call('TIME')
  clock = t[1] * 1000 + floor(t[2] / 1000)
else
  clock = tonumber(ARGV[1])
end
-- one cost for every limit, or the cost of each limit in order: "1,5,1" (decide_each);
-- most costs are 1, and comparing strings is cheaper than converting them (strtod)
local costs, single = nil, ARGV[2] == '1' and 1 or tonumber(ARGV[2])
if not single then
  costs = {}
  for c in string.gmatch(ARGV[2], '[^,]+') do
    costs[#costs + 1] = tonumber(c)
  end
end
local consume, pad = ARGV[3] == '1', ARGV[4]
local n = #KEYS
local reply = '%d %d %d %d %s'
local exact = 9007199254740992 -- 2^53

if n == 1 then
  local code, limit, period, capacity, extra, fmt = unpack(SPEC, ARGV[5])
  local state, now, cost = redis.call('GET', KEYS[1]), clock, single or costs[1]
  local new, expires, keep, add, span
  local allowed, remaining, reset, retry, delay = 0, 0, 0, 0, 0
  -- @algorithms
  if consume and allowed == 1 then
    if add then -- INCRBY: no number to convert to text (pcall: should the value be text)
      add = type(redis.pcall('INCRBY', KEYS[1], cost)) == 'number'
    end
    if add then -- written
    elseif keep then
      redis.call('SET', KEYS[1], new, 'KEEPTTL')
    else
      local ttl = expires - clock
      if ttl < 1 then
        ttl = 1
      end
      if pad ~= '0' then
        ttl = ttl + pad
      end
      redis.call('SET', KEYS[1], new, 'PX', ttl)
    end
  end
  if delay == 0 and reset < span and retry < span - 1 then -- answer(...), inline: most end here
    local packed = remaining * span + reset
    if allowed == 0 then
      packed = -1 - (packed * span + retry + 1)
    end
    if packed < exact and packed > -exact then
      return packed
    end
  end
  return format(reply, allowed, remaining, reset, retry, delay)
end

-- the reply for one limit (see above)
local function answer(allowed, remaining, reset, retry, delay, span)
  if delay == 0 and reset < span and retry < span - 1 then
    local packed = remaining * span + reset
    if allowed == 0 then
      packed = -1 - (packed * span + retry + 1)
    end
    if packed < exact and packed > -exact then
      return packed
    end
  end
  return format(reply, allowed, remaining, reset, retry, delay)
end

local out, states, expiries, kept, adds = {}, {}, {}, {}, {}
local admitted = true
for i = 1, n do
  local code, limit, period, capacity, extra, fmt = unpack(SPEC, ARGV[i + 4])
  local state, now, cost = redis.call('GET', KEYS[i]), clock, single or costs[i]
  local new, expires, keep, add, span
  local allowed, remaining, reset, retry, delay = 0, 0, 0, 0, 0
  -- @algorithms
  out[i] = answer(allowed, remaining, reset, retry, delay, span)
  if allowed == 0 then
    admitted = false
  end
  states[i], expiries[i], kept[i], adds[i] = new, expires, keep, add and cost
end

if consume and admitted then
  for i = 1, n do
    if adds[i] and type(redis.pcall('INCRBY', KEYS[i], adds[i])) == 'number' then
      -- written (see the one-limit path)
    elseif kept[i] then
      redis.call('SET', KEYS[i], states[i], 'KEEPTTL')
    else
      local ttl = expiries[i] - clock
      if ttl < 1 then
        ttl = 1
      end
      if pad ~= '0' then
        ttl = ttl + pad
      end
      redis.call('SET', KEYS[i], states[i], 'PX', ttl)
    end
  end
end
return out
