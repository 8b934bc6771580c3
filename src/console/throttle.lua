-- toolgate: the failed console sign-ins of one key (a name or an address),
-- shared by every replica on this Redis, timed by Redis's clock.
--
-- KEYS[1]  the key's hash: count (failures in a row), last (ms), reported
--          (whether a refusal in the current wait was reported)
-- ARGV[1]  wait | failed | succeeded
-- ARGV[2]  the failures in a row that go unpunished
-- ARGV[3]  the longest wait, in ms
-- ARGV[4]  how long failures are remembered after the last one, in ms
--
-- wait answers {0} (no wait) or {1, ms left, 1 for the first refusal of
-- this wait else 0}; the others answer {0}.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local key, mode = KEYS[1], ARGV[1]

if mode == 'succeeded' then
  redis.call('DEL', key)
  return {0}
end
if mode == 'failed' then
  redis.call('HINCRBY', key, 'count', '1')
  redis.call('HSET', key, 'last', string.format('%d', now), 'reported', '0')
  redis.call('PEXPIRE', key, ARGV[4])
  return {0}
end

local stored = redis.call('HMGET', key, 'count', 'last', 'reported')
local count, last = tonumber(stored[1]), tonumber(stored[2])
if not count or not last then return {0} end
local over = count - tonumber(ARGV[2])
if over < 0 then return {0} end
-- 1 s after the first punished failure, twice as long after each next one.
local lockout = tonumber(ARGV[3])
if over < 40 then lockout = math.min(lockout, 1000 * 2 ^ over) end
local left = lockout - (now - last)
if left <= 0 then return {0} end
local first = 0
if stored[3] ~= '1' then
  redis.call('HSET', key, 'reported', '1')
  first = 1
end
return {1, math.floor(left), first}
