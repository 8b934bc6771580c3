-- toolgate: the console sign-in attempts of one key (a name or an address),
-- shared by every replica on this Redis, timed by Redis's clock.
--
-- KEYS[1]  the key's hash: count (attempts in a row not followed by a
--          sign-in), last (ms), reported (whether a refusal in the current
--          wait was reported)
-- ARGV[1]  refuse | slow | succeeded
-- ARGV[2]  the attempts in a row that go unpunished
-- ARGV[3]  the longest wait, in ms
-- ARGV[4]  how long attempts are remembered after the last one, in ms
--
-- refuse:  while the key must wait, answers {1, ms left, 1 for the first
--          refusal of this wait else 0} and counts nothing; otherwise
--          counts the attempt and answers {0}.
-- slow:    counts the attempt, and answers the wait as refuse does ({0}
--          for none): the caller sits it out, then checks the password.
-- succeeded forgets the key.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local key, mode = KEYS[1], ARGV[1]

if mode == 'succeeded' then
  redis.call('DEL', key)
  return {0}
end

local answer = {0}
local stored = redis.call('HMGET', key, 'count', 'last', 'reported')
local count, last = tonumber(stored[1]), tonumber(stored[2])
if count and last then
  local over = count - tonumber(ARGV[2])
  if over >= 0 then
    -- 1 s after the first punished attempt, twice as long after each next one.
    local lockout = tonumber(ARGV[3])
    if over < 40 then lockout = math.min(lockout, 1000 * 2 ^ over) end
    local left = lockout - math.max(0, now - last)
    if left > 0 then
      local first = 0
      if stored[3] ~= '1' then
        redis.call('HSET', key, 'reported', '1')
        first = 1
      end
      answer = {1, math.floor(left), first}
    end
  end
end
if answer[1] == 1 and mode == 'refuse' then return answer end

redis.call('HINCRBY', key, 'count', '1')
redis.call('HSET', key, 'last', string.format('%d', now), 'reported', '0')
redis.call('PEXPIRE', key, ARGV[4])
return answer
