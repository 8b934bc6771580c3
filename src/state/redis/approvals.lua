-- toolgate: the approvals of a namespace, changed atomically.
--
-- KEYS[1] the namespace's prefix, `{ns:approvals}` (every key below starts
--         with it, so they share one cluster slot; the approvals' own keys
--         are named from it, as the script cannot be told their ids ahead)
-- ARGV[1] what to do: open | decide | redeem | tidy
-- ARGV[2] now (seconds since the Unix epoch)
--
-- An approval is a hash `<prefix>:a:<id>`: json (the approval as opened),
-- state (pending|granted|rejected|used), by, grants and persons (lines),
-- expires, approver ('' for none), quorum, agent, session ('' for none),
-- digest (of its binding). `<prefix>:pending` orders the pending ones by
-- expiry; `<prefix>:pa` and `<prefix>:ps` count them per agent and per
-- session; `<prefix>:open` finds an open one by its binding's digest;
-- `<prefix>:expiring` orders every approval not yet used or rejected by
-- expiry, to take it out of `open` when it expires; `<prefix>:expired`
-- counts those that expired pending.

local prefix = KEYS[1]
local mode, now = ARGV[1], tonumber(ARGV[2])
local pending, per_agent, per_session = prefix .. ':pending', prefix .. ':pa', prefix .. ':ps'
local open_index = prefix .. ':open'
local expiring = prefix .. ':expiring'

local function session_key(agent, session) return #agent .. ':' .. agent .. '|' .. session end

-- Stops counting an approval that leaves `pending` (decided or expired).
local function uncount(id)
  local key = prefix .. ':a:' .. id
  local agent, session = unpack(redis.call('HMGET', key, 'agent', 'session'))
  redis.call('ZREM', pending, id)
  if agent then
    if redis.call('HINCRBY', per_agent, agent, -1) <= 0 then redis.call('HDEL', per_agent, agent) end
    if session and session ~= '' then
      local sk = session_key(agent, session)
      if redis.call('HINCRBY', per_session, sk, -1) <= 0 then redis.call('HDEL', per_session, sk) end
    end
  end
end

local function unindex(key, id)
  local digest = redis.call('HGET', key, 'digest')
  if digest and redis.call('HGET', open_index, digest) == id then redis.call('HDEL', open_index, digest) end
end

-- Approvals that expired: pending ones are counted as expired; every one
-- leaves the index of open approvals.
local function tidy()
  local expired = redis.call('ZRANGEBYSCORE', pending, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    uncount(id)
    redis.call('INCR', prefix .. ':expired')
  end
  local gone = redis.call('ZRANGEBYSCORE', expiring, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(gone) do
    unindex(prefix .. ':a:' .. id, id)
    redis.call('ZREM', expiring, id)
  end
end

tidy()
if mode == 'tidy' then return 'ok' end

if mode == 'open' then
  -- ARGV: id, json, expires, approver, quorum, agent, session, digest,
  --       most per agent, most per session, seconds to keep
  local id, json, expires, approver, quorum, agent, session, digest =
    ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
  if (tonumber(redis.call('HGET', per_agent, agent)) or 0) >= tonumber(ARGV[11]) then return 'too_many:agent' end
  if session ~= '' and (tonumber(redis.call('HGET', per_session, session_key(agent, session))) or 0) >= tonumber(ARGV[12]) then
    return 'too_many:session'
  end
  local key = prefix .. ':a:' .. id
  redis.call('HSET', key, 'json', json, 'state', 'pending', 'by', '', 'grants', '', 'persons', '',
    'expires', expires, 'approver', approver, 'quorum', quorum, 'agent', agent, 'session', session, 'digest', digest)
  redis.call('EXPIRE', key, tonumber(ARGV[13]))
  redis.call('ZADD', pending, expires, id)
  redis.call('ZADD', expiring, expires, id)
  redis.call('HINCRBY', per_agent, agent, 1)
  if session ~= '' then redis.call('HINCRBY', per_session, session_key(agent, session), 1) end
  -- A granted approval of the same call, or a pending one, keeps its place.
  local other = redis.call('HGET', open_index, digest)
  local keep = false
  if other then
    local state, other_expires = unpack(redis.call('HMGET', prefix .. ':a:' .. other, 'state', 'expires'))
    keep = (state == 'granted' or state == 'pending') and other_expires and tonumber(other_expires) > now
  end
  if not keep then redis.call('HSET', open_index, digest, id) end
  return 'ok'
end

local id = ARGV[3]
local key = prefix .. ':a:' .. id
if redis.call('EXISTS', key) == 0 then return 'unknown' end
local state, expires, approver, quorum, persons, grants = unpack(
  redis.call('HMGET', key, 'state', 'expires', 'approver', 'quorum', 'persons', 'grants'))
expires, quorum = tonumber(expires), tonumber(quorum)

if mode == 'decide' then
  -- ARGV: id, approver ('' for none), by, person, '1' to grant
  if approver ~= '' and approver ~= ARGV[4] then return 'wrong:' .. approver end
  if state == 'used' then return 'used' end
  if state == 'rejected' then return 'decided:rejected' end
  if expires <= now then return 'expired' end
  if state == 'granted' then return 'decided:granted' end
  local by, grant = ARGV[5], ARGV[7] == '1'
  if grant and quorum > 1 then
    local count = 0
    for person in string.gmatch(persons, '[^\n]+') do
      count = count + 1
      if person == ARGV[6] then return 'same:' .. count .. ':' .. quorum end
    end
    local granted = (grants == '' and by) or (grants .. '\n' .. by)
    redis.call('HSET', key, 'grants', granted, 'persons', (persons == '' and ARGV[6]) or (persons .. '\n' .. ARGV[6]))
    if count + 1 < quorum then return 'ok' end
    by = string.gsub(granted, '\n', ', ')
  end
  redis.call('HSET', key, 'state', grant and 'granted' or 'rejected', 'by', by)
  uncount(id)
  if not grant then
    unindex(key, id)
    redis.call('ZREM', expiring, id)
  end
  return 'ok'
end

if mode == 'redeem' then
  -- ARGV: id, the call's digest
  if state == 'used' then return 'used' end
  if state == 'rejected' then return 'rejected' end
  if expires <= now then return 'expired' end
  if state == 'pending' then return 'pending' end
  if state ~= 'granted' then return 'unknown' end
  if redis.call('HGET', key, 'digest') ~= ARGV[4] then return 'mismatch' end
  redis.call('HSET', key, 'state', 'used')
  unindex(key, id)
  redis.call('ZREM', expiring, id)
  return 'ok'
end
return redis.error_reply('unknown mode ' .. tostring(mode))
