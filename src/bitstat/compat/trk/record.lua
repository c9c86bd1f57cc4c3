-- record.lua: write one batch of trk events (one day of trk's key layout) at once, all or
-- nothing: Redis does not roll a script back, so every write that could fail is checked first.
-- KEYS[1..n]  every key the batch writes; the ops below name them by their index in KEYS
-- ARGV[1]     one letter per key, the type the key must have if it exists:
--             s set, h hash, z sorted set, b string (a bitmap)
-- ARGV[2..]   a flat list of ops, each a code followed by its arguments:
--   I kmap kbit member    number `member` as trk's redis-ident does (ZSCORE in the sorted set
--                         KEYS[kmap], else ZCARD as its number and ZADD), then SETBIT KEYS[kbit]
--                         at that number
--   H k field incr        HINCRBY (the batch's increments of one field summed by the client)
--   Z k member incr       ZINCRBY
--   S k n member*n        SADD
-- Returns 1 when written; an error reply naming the key (and field) that would have failed,
-- before anything is written.

local types = {s = 'set', h = 'hash', z = 'zset', b = 'string'}
local kinds = ARGV[1]
for i = 1, #KEYS do
  local want = types[string.sub(kinds, i, i)]
  local have = redis.call('TYPE', KEYS[i])['ok']
  if have ~= 'none' and have ~= want then
    return redis.error_reply('trk: key ' .. KEYS[i] .. ' holds a ' .. have .. ', not a ' .. want)
  end
end

local function integer(text)
  return text == '0' or (#text <= 20 and string.match(text, '^%-?[1-9]%d*$') ~= nil)
end

-- HINCRBY fails on a field that is not an integer, or past 64 bits: check each one first.
-- Doubles are not exact up there, so a total within 2^63 by less than 2^10 is refused too.
local limit = 9223372036854774784
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'I' then
    i = i + 4
  elseif op == 'H' then
    local key, field, incr = KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
    local stored = redis.call('HGET', key, field)
    if stored and not integer(stored) then
      return redis.error_reply('trk: field ' .. field .. ' of ' .. key .. ' holds '
        .. stored .. ', not an integer')
    end
    local total = tonumber(stored or '0') + tonumber(incr)
    if total > limit or total < -limit then
      return redis.error_reply('trk: field ' .. field .. ' of ' .. key
        .. ' would pass 64 bits')
    end
    i = i + 4
  elseif op == 'Z' then
    i = i + 4
  elseif op == 'S' then
    i = i + 3 + tonumber(ARGV[i + 2])
  else
    return redis.error_reply('trk: unknown op ' .. tostring(op))
  end
end

i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'I' then
    local map, member = KEYS[tonumber(ARGV[i + 1])], ARGV[i + 3]
    local id = redis.call('ZSCORE', map, member)
    if not id then
      id = redis.call('ZCARD', map)
      redis.call('ZADD', map, id, member)
    end
    redis.call('SETBIT', KEYS[tonumber(ARGV[i + 2])], tonumber(id), 1)
    i = i + 4
  elseif op == 'H' then
    redis.call('HINCRBY', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'Z' then
    redis.call('ZINCRBY', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 3], ARGV[i + 2])
    i = i + 4
  else
    local n = tonumber(ARGV[i + 2])
    redis.call('SADD', KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
    i = i + 3 + n
  end
end
return 1
