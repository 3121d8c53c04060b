-- token_bucket: mirrors ratelimit/algorithms/token_bucket.py.
-- State: last update ms, tokens scaled by the period (a full bucket holds capacity * period).
-- A state whose time is ahead of now (a debt after a charge, or another clock ahead of this
-- one) holds its tokens less the refill until then, and is written back at its own time.
local full = capacity * period
span = cdiv(full, limit) + 2 -- reset and retry stay below this - 1 (but for a debt)
local tokens, ahead = full, nil
if state and #state == struct.size(fmt) then
  local last, saved = struct.unpack(fmt, state)
  if now < last then
    ahead = last
    tokens = saved - (last - now) * limit
  else
    tokens = saved + (now - last) * limit
    if tokens > full then
      tokens = full
    end
  end
end
local need = cost * period
if cost <= capacity and tokens >= need then
  tokens = tokens - need
  reset = cdiv(full - tokens, limit)
  if ahead then
    new = struct.pack(fmt, ahead, tokens + (ahead - now) * limit)
  else
    new = struct.pack(fmt, now, tokens)
  end
  allowed, expires = 1, now + reset
else
  retry = -1
  if cost <= capacity then
    retry = cdiv(need - tokens, limit)
  end
  reset = cdiv(full - tokens, limit)
end
if tokens > 0 then
  remaining = fdiv(tokens, period)
end
