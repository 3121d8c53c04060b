-- sliding_window: mirrors ratelimit/algorithms/sliding_window.py. State: window index,
-- previous count, current count as one decimal number "<window><prev><curr>", the counts
-- fmt - 1 digits wide (fmt is 10^digits): (window * fmt + prev) * fmt + curr, which Redis
-- stores as an integer. Read and written as a Lua number while that stays below 2^53
-- (exact), else through its digits. A debt (a current count above the limit, after a
-- charge) is the text "d<window>:<prev>:<curr>" (charge.lua).
local window = floor(now / period)
if window * period > now then -- (a double quotient may round up to the next integer)
  window = window - 1
end
local start = window * period
span = 2 * period + 2 -- reset and retry stay below 2 * period + 1
local scale = 10 -- = fmt: the least power of 10 above the limit (no text to convert)
while scale <= limit do
  scale = scale * 10
end
local square = scale * scale
local base = window * square
local small = base + square <= 9007199254740992
local prev, curr = 0, 0
if state then
  local saved, p, c
  if small then
    local v = tonumber(state)
    if v then
      saved = floor(v / square)
      if saved * square > v then
        saved = saved - 1
      end
      local rest = v - saved * square
      p = floor(rest / scale)
      if p * scale > rest then
        p = p - 1
      end
      c = rest - p * scale
    end
  else
    local digits = #fmt - 1
    if #state > 2 * digits then
      saved = tonumber(sub(state, 1, -2 * digits - 1))
      p = tonumber(sub(state, -2 * digits, -digits - 1)) or 0
      c = tonumber(sub(state, -digits)) or 0
    end
  end
  if saved == window then
    prev, curr = p, c
    keep = true -- written in this window: the key's TTL already ends where it should
    add = small -- and it holds the number base + prev * scale + curr: INCRBY cost
  elseif saved == window - 1 then
    prev = c
  elseif string.byte(state) == 100 then -- a debt (charge.lua)
    -- @include carried.lua
  end
end
local free = limit * period - prev * (period - (now - start)) - curr * period
local admit = cost <= limit and cost * period <= free
if admit then
  curr = curr + cost
  free = free - cost * period
end
reset = 0 -- fresh again once the current count has left the next window's weighting
if curr > limit then -- a debt: once it is paid and has left the weighting
  reset = start + (cdiv(curr, limit) + 1) * period - now
elseif curr > 0 then
  reset = start + 2 * period - now
elseif prev > 0 then
  reset = start + period - now
end
remaining = fdiv(free, period)
if admit then
  if small then
    new = base + prev * scale + curr
  else
    local d = '%0' .. (#fmt - 1) .. 'd'
    new = format('%d' .. d .. d, window, prev, curr)
  end
  allowed, expires = 1, start + 2 * period
else
  if cost > limit then
    retry = -1
  elseif curr > limit then -- a debt: the first window it leaves room in, then the weighting
    local ahead = cdiv(curr + cost - limit, limit)
    local then_curr = curr - ahead * limit
    if then_curr < 0 then
      then_curr = 0
    end
    local then_prev = curr - (ahead - 1) * limit
    if then_prev > limit then
      then_prev = limit
    end
    retry = start + ahead * period + period - fdiv((limit - then_curr - cost) * period, then_prev) - now
  elseif curr + cost <= limit then
    retry = start + period - fdiv((limit - curr - cost) * period, prev) - now
  else
    retry = start + 2 * period - fdiv((limit - cost) * period, curr) - now
  end
  if remaining < 0 then
    remaining = 0
  end
end
