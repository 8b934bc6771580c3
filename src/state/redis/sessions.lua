-- toolgate: one session's counters, checked and counted atomically.
--
-- KEYS[1]  the session's hash: last (ms), n (tools counted), t (total),
--          o:<tool>, c:<cap counter>, e (error streak), $ (cost, millionths)
-- KEYS[2]  the agent's live sessions: a sorted set of session keys by last use
-- KEYS[3…] the agent's rate-limit buckets, one per rate cap in order:
--          hashes of tokens (millionths of a call) and updated (ms)
-- ARGV[1]  now in ms, or 0 to read Redis's own clock (TIME)
-- ARGV[2]  what to do: admit | check | outcome | count
-- ARGV[3]  idle ms (a session unused this long starts again)
-- ARGV[4]  the most live sessions of the agent
-- ARGV[5]  the most tools a session counts
-- ARGV[6]  admit: the tool; outcome: 1 for an error; count: the field
-- ARGV[7]  outcome: the cost in millionths
-- ARGV[8]  the number of caps, then per cap: counter, limit, window ms (0: a count cap)
--
-- Returns {0} admitted (or checked), {1, i} refused by cap i (1-based),
-- {2} the session limit, {3, errors, cost} the outcome totals, {4, value}.
-- All the keys carry the agent's hash tag: they live on one cluster slot.

local now = tonumber(ARGV[1])
if now == 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- Redis formats every number a script gives it: give it text where there is.
local now_text = string.format('%d', now)
local mode = ARGV[2]
local idle = tonumber(ARGV[3])
local max_sessions = tonumber(ARGV[4])
local max_tools = tonumber(ARGV[5])
local session, live = KEYS[1], KEYS[2]

local last = tonumber(redis.call('HGET', session, 'last'))
if last and now - last >= idle then
  redis.call('DEL', session)
  redis.call('ZREM', live, session)
  last = nil
end

if mode == 'count' then
  if not last then return {4, 0} end
  return {4, tonumber(redis.call('HGET', session, ARGV[6])) or 0}
end

if not last then
  if redis.call('ZCARD', live) >= max_sessions then
    -- Make room: sessions idle for the idle time are gone.
    local expired = redis.call('ZRANGEBYSCORE', live, '-inf', now - idle, 'LIMIT', 0, 1000)
    for _, key in ipairs(expired) do
      redis.call('DEL', key)
      redis.call('ZREM', live, key)
    end
    if redis.call('ZCARD', live) >= max_sessions then return {2} end
  end
end

-- The session is used now, whatever the answer.
local function touch()
  redis.call('HSET', session, 'last', now_text)
  redis.call('ZADD', live, now_text, session)
  redis.call('PEXPIRE', session, ARGV[3])
end

if mode == 'outcome' then
  local errors = 0
  if ARGV[6] == '1' then errors = (tonumber(redis.call('HGET', session, 'e')) or 0) + 1 end
  local cost = (tonumber(redis.call('HGET', session, '$')) or 0) + tonumber(ARGV[7])
  redis.call('HSET', session, 'e', errors, '$', cost)
  touch()
  return {3, errors, cost}
end

local caps = tonumber(ARGV[8])
local refilled = {}
local bucket_index = 2
for i = 1, caps do
  local at = 8 + (i - 1) * 3
  local counter, limit, window = ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  local room
  if window > 0 then
    bucket_index = bucket_index + 1
    local key = KEYS[bucket_index]
    local capacity = limit * 1000000
    local stored = redis.call('HMGET', key, 'tokens', 'updated')
    local tokens, updated = capacity, now
    if stored[1] then
      local elapsed = math.max(0, now - tonumber(stored[2]))
      tokens = math.min(capacity, tonumber(stored[1]) + math.floor(elapsed * capacity / window))
      updated = math.max(now, tonumber(stored[2]))
    end
    refilled[#refilled + 1] = {key, tokens, updated, window}
    room = tokens >= 1000000
  else
    room = (tonumber(redis.call('HGET', session, 'c:' .. counter)) or 0) < limit
  end
  if not room then
    touch()
    return {1, i}
  end
end

if mode == 'admit' then
  local tool = ARGV[6]
  local known = redis.call('HEXISTS', session, 'o:' .. tool) == 1
  if not known and (tonumber(redis.call('HGET', session, 'n')) or 0) >= max_tools then
    touch()
    return {2}
  end
  redis.call('HINCRBY', session, 't', '1')
  redis.call('HINCRBY', session, 'o:' .. tool, '1')
  if not known then redis.call('HINCRBY', session, 'n', '1') end
  for i = 1, caps do
    local at = 8 + (i - 1) * 3
    if tonumber(ARGV[at + 3]) == 0 then redis.call('HINCRBY', session, 'c:' .. ARGV[at + 1], '1') end
  end
  for _, bucket in ipairs(refilled) do
    redis.call('HSET', bucket[1], 'tokens', bucket[2] - 1000000, 'updated', bucket[3])
    -- An absent bucket is a full one: keep it only until it would be full again.
    redis.call('PEXPIRE', bucket[1], bucket[4] + 1000)
  end
end
touch()
return {0}
