-- toolgate: the console's sign-in sessions, shared by every replica on
-- this Redis, timed by Redis's clock.
--
-- KEYS[1]  the session's hash (under a digest of its token): account,
--          fingerprint (the account's when it signed in), csrf, started (ms)
-- KEYS[2]  start: the account's sessions, a sorted set of session keys by start
-- ARGV[1]  start | find | end
-- ARGV[2]  the idle time that ends a session, in ms
-- ARGV[3]  the time after sign-in that ends a session, in ms
-- start:   ARGV[4] account, ARGV[5] fingerprint, ARGV[6] csrf, ARGV[7] the
--          most sessions an account has (its oldest ends to make room)
--
-- find answers {account, fingerprint, csrf} for a live session (and
-- counts it as used now), or {}; the others answer {}.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local session, mode = KEYS[1], ARGV[1]
local idle, lifetime = ARGV[2], tonumber(ARGV[3])

if mode == 'end' then
  redis.call('DEL', session)
  return {}
end

if mode == 'find' then
  local stored = redis.call('HMGET', session, 'account', 'fingerprint', 'csrf', 'started')
  if not stored[1] or not stored[4] then return {} end
  if now - tonumber(stored[4]) >= lifetime then
    redis.call('DEL', session)
    return {}
  end
  redis.call('PEXPIRE', session, idle)
  return {stored[1], stored[2], stored[3]}
end

-- start: the account makes room among its own sessions.
local own = KEYS[2]
redis.call('ZREMRANGEBYSCORE', own, '-inf', now - lifetime)
for _, key in ipairs(redis.call('ZRANGE', own, 0, -1)) do
  if redis.call('EXISTS', key) == 0 then redis.call('ZREM', own, key) end
end
while redis.call('ZCARD', own) >= tonumber(ARGV[7]) do
  local oldest = redis.call('ZRANGE', own, 0, 0)[1]
  redis.call('DEL', oldest)
  redis.call('ZREM', own, oldest)
end
local started = string.format('%d', now)
redis.call('HSET', session, 'account', ARGV[4], 'fingerprint', ARGV[5], 'csrf', ARGV[6], 'started', started)
redis.call('PEXPIRE', session, idle)
redis.call('ZADD', own, started, session)
redis.call('PEXPIRE', own, lifetime)
return {}
