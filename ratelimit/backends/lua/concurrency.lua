-- ratelimit: concurrency leases; mirrors ratelimit/algorithms/concurrency.py exactly.
--
-- KEYS[1]  the client's leases: a sorted set, member = request token, score = expiry ms
-- ARGV[1]  now in ms, or "" to use the Redis server clock (TIME)
-- ARGV[2]  "acquire" or "release"
-- ARGV[3]  the request's token
-- ARGV[4]  limit (requests in flight), ARGV[5] lease ms   (acquire only)
--
-- acquire returns {allowed 1/0, remaining, reset_after ms, retry_after ms}; release {1}.
-- Expired leases (score <= now) are dropped first: a killed worker's slots free themselves.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[2] == 'release' then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return {1}
end
local limit = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local held = redis.call('ZCARD', KEYS[1])
if held < limit then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  return {1, limit - held - 1, lease, 0}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local retry = math.min(1000, tonumber(first[2]) - now)
return {0, 0, tonumber(last[2]) - now, retry}
