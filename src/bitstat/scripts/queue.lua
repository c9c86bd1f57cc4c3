-- queue.lua: the events `track()` queued, applied in batches (queued.py). Every key is in the
-- namespace's meta slot. A queued event is "TOKEN JSON"; a claim is "MS\nEVENT\nEVENT...".
-- ARGV[1] the step:
--
-- "push"  KEYS: queue (list), seen (the set of the tokens made in the token's window of time)
--         ARGV: token, event, seconds the set must be kept from now (at least: a set 5 s or
--         more short of it gets it; clients of other retry deadlines share the set). A token
--         seen is not queued again: every push looks, a first one too (held in the network,
--         it may reach the server after its retry). Returns how many events are queued (0:
--         the token was seen, nothing pushed).
-- "claim" KEYS: queue, claims (hash: claim id -> "MS\n" events)
--         ARGV: lease ms, a new claim id, most events taken, then the ids asked before
--         A claim id asked before (its reply was lost) gets its claim again, as taken over.
--         One not found (never made, or taken over and applied) is never made again: a new
--         claim takes the new id, which no batch has been recorded under.
--         A claim whose flush started more than the lease ago (its process died, or gave up)
--         is taken over first: its lease starts again. Else up to `most` queued events move to
--         a new claim. Returns {claim id, events joined by "\n", 1 if taken over, now ms}, or
--         {}. Leases are of the server's clock (TIME), never a client's: a client whose clock
--         is behind would take over live claims, and one whose clock is ahead hold claims long.
-- "done"  KEYS: claims  ARGV: claim id. The claim's batch is applied: forgotten.
-- "held"  KEYS: claims. The ids of the claims held, without their events (up to 10,000 each):
--         read with HGETALL, as HKEYS is not in the documented ACL rule (docs/operations.md).
local step = ARGV[1]
if step == 'push' then
  if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then
    return 0
  end
  local keep = tonumber(ARGV[4])
  if redis.call('TTL', KEYS[2]) < keep - 5 then  -- (-1: none yet)
    redis.call('EXPIRE', KEYS[2], keep)
  end
  return redis.call('RPUSH', KEYS[1], ARGV[3])
elseif step == 'claim' then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local lease, id, most = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
  for i = 5, #ARGV do
    local mine = redis.call('HGET', KEYS[2], ARGV[i])
    if mine then  -- this claim asked again, its reply lost: the same events, a new lease
      local events = string.sub(mine, string.find(mine, '\n', 1, true) + 1)
      redis.call('HSET', KEYS[2], ARGV[i], now .. '\n' .. events)
      return {ARGV[i], events, 1, now}
    end
  end
  local claims = redis.call('HGETALL', KEYS[2])
  for i = 1, #claims, 2 do
    local body = claims[i + 1]
    local cut = string.find(body, '\n', 1, true)
    if tonumber(string.sub(body, 1, cut - 1)) + lease <= now then
      local events = string.sub(body, cut + 1)
      redis.call('HSET', KEYS[2], claims[i], now .. '\n' .. events)
      return {claims[i], events, 1, now}
    end
  end
  local events = redis.call('LRANGE', KEYS[1], 0, most - 1)
  if #events == 0 then
    return {}
  end
  if #events < most then
    redis.call('DEL', KEYS[1])
  else
    redis.call('LTRIM', KEYS[1], most, -1)
  end
  local joined = table.concat(events, '\n')
  redis.call('HSET', KEYS[2], id, now .. '\n' .. joined)
  return {id, joined, 0, now}
elseif step == 'done' then
  return redis.call('HDEL', KEYS[1], ARGV[2])
elseif step == 'held' then
  local claims = redis.call('HGETALL', KEYS[1])
  local ids = {}
  for i = 1, #claims, 2 do
    ids[#ids + 1] = claims[i]
  end
  return ids
end
return redis.error_reply('queue.lua: unknown step ' .. tostring(step))
