-- queue.lua: the events `track()` queued, applied in batches (queued.py). Every key is in the
-- namespace's meta slot. A queued event is "TOKEN JSON"; a claim is "MS\nEVENT\nEVENT...".
-- ARGV[1] the step:
--
-- "push"  KEYS: queue (list), since (ms of its oldest event), seen now, seen before (sets of the
--         tokens pushed in this window of time and the one before)
--         ARGV: now ms, window seconds, token, event
--         Queues the event unless its token was seen (a push tried again after a lost reply).
--         Returns {events queued, ms of the oldest, 1 if queued now / 0 if seen before}.
-- "claim" KEYS: queue, since, claims (hash: claim id -> "MS\n" events)
--         ARGV: now ms, lease ms, a new claim id, most events taken
--         A claim whose flush started more than the lease ago (its process died, or gave up)
--         is taken over first: its lease starts again. Else up to `most` queued events move to
--         a new claim. Returns {claim id, events joined by "\n", 1 if taken over}, or {}.
-- "done"  KEYS: claims  ARGV: claim id. The claim's batch is applied: forgotten.
local step = ARGV[1]
if step == 'push' then
  local now, window, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
  if redis.call('SISMEMBER', KEYS[3], token) == 1 or redis.call('SISMEMBER', KEYS[4], token) == 1 then
    return {redis.call('LLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or now), 0}
  end
  if redis.call('SADD', KEYS[3], token) == 1 then
    redis.call('EXPIRE', KEYS[3], 2 * window + 5)
  end
  local n = redis.call('RPUSH', KEYS[1], ARGV[5])
  if n == 1 then
    redis.call('SET', KEYS[2], now)
    return {1, now, 1}
  end
  return {n, tonumber(redis.call('GET', KEYS[2]) or now), 1}
elseif step == 'claim' then
  local now, lease, id, most = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
  local claims = redis.call('HGETALL', KEYS[3])
  for i = 1, #claims, 2 do
    local body = claims[i + 1]
    local cut = string.find(body, '\n', 1, true)
    if tonumber(string.sub(body, 1, cut - 1)) + lease <= now then
      local events = string.sub(body, cut + 1)
      redis.call('HSET', KEYS[3], claims[i], now .. '\n' .. events)
      return {claims[i], events, 1}
    end
  end
  local events = redis.call('LRANGE', KEYS[1], 0, most - 1)
  if #events == 0 then
    return {}
  end
  if redis.call('LLEN', KEYS[1]) <= most then
    redis.call('DEL', KEYS[1], KEYS[2])
  else
    redis.call('LTRIM', KEYS[1], most, -1)
  end
  local joined = table.concat(events, '\n')
  redis.call('HSET', KEYS[3], id, now .. '\n' .. joined)
  return {id, joined, 0}
elseif step == 'done' then
  return redis.call('HDEL', KEYS[1], ARGV[2])
end
return redis.error_reply('queue.lua: unknown step ' .. tostring(step))
