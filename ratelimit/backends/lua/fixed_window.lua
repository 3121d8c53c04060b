-- fixed_window: mirrors ratelimit/algorithms/fixed_window.py. State: window index and count
-- as one decimal number, the count fmt - 1 digits wide ("<window><count>"; fmt is 10^digits):
-- window * fmt + count, which Redis stores as an integer. Read and written as a Lua number
-- while that stays below 2^53 (exact), else through its digits. A debt (a count above the
-- limit, after a charge) is the text "d<window>:<count>" (charge.lua).
local window = floor(now / period)
if window * period > now then -- (a double quotient may round up to the next integer)
  window = window - 1
end
local scale = 10 -- = fmt: the least power of 10 above the limit (no text to convert)
while scale <= limit do
  scale = scale * 10
end
local base = window * scale
local small = base + scale <= 9007199254740992
local count = 0
if state then
  if small then
    local v = tonumber(state)
    if v and v >= base and v < base + scale then
      count = v - base
      keep = true -- written in this window: the key's TTL already ends with it
      add = true -- and it holds base + count: INCRBY cost writes base + count + cost
    end
  elseif tonumber(sub(state, 1, -#fmt)) == window then
    count = tonumber(sub(state, 1 - #fmt)) or 0
    keep = true
  end
end
if state and not keep and string.byte(state) == 100 then -- a debt (charge.lua)
  local prev, curr = 0, 0
  -- @include carried.lua
  count = curr
end
reset = (window + 1) * period - now
span = period + 2 -- reset and retry stay below period + 1
if cost <= limit and count + cost <= limit then
  count = count + cost
  if count == 0 then -- a cost-0 probe of a fresh key (Limiter.peek)
    reset = 0
  end
  if small then
    new = base + count
  else
    new = format('%d%0' .. (#fmt - 1) .. 'd', window, count)
  end
  allowed, remaining, expires = 1, limit - count, (window + 1) * period
else
  retry = reset
  if count > limit then -- a debt: windows until it leaves room for cost, until it is paid
    retry = reset + (cdiv(count + cost - limit, limit) - 1) * period
    reset = reset + (cdiv(count, limit) - 1) * period
  end
  if cost > limit then
    retry = -1
  end
  if count == 0 then
    reset = 0
  end
  remaining = limit - count
  if remaining < 0 then
    remaining = 0
  end
end
