-- token_bucket: mirrors ratelimit/algorithms/token_bucket.py.
-- State: last update ms, tokens scaled by the period (a full bucket holds capacity * period).
local full = capacity * period
span = cdiv(full, limit) + 2 -- reset and retry stay below this - 1
local tokens = full
if state and #state == struct.size(fmt) then
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
  reset = cdiv(full - tokens, limit)
  new = struct.pack(fmt, now, tokens)
  allowed, expires = 1, now + reset
else
  retry = -1
  if cost <= capacity then
    retry = cdiv(need - tokens, limit)
  end
  reset = cdiv(full - tokens, limit)
end
remaining = fdiv(tokens, period)
