-- record.lua: write one batch of trk events (one day of trk's key layout) at once, all or
-- nothing: Redis does not roll a script back, so every write that could fail is checked first.
-- KEYS[1..n]  every key the batch writes; the ops below name them by their index in KEYS
-- ARGV[1]     one letter per key, the type the key must have if it exists:
--             s set, h hash, z sorted set, b string (a bitmap); or n: the key must not exist
--             (a day set of the prefix Trk used by default before: returns {'elsewhere', key}
--             and writes nothing)
-- ARGV[2..]   a flat list of ops, each a code followed by its arguments:
--   I kmap kbit member    number `member` as trk's redis-ident does (ZSCORE in the sorted set
--                         KEYS[kmap], else ZCARD as its number and ZADD), then SETBIT KEYS[kbit]
--                         at that number
--   H k field incr most least
--                         HINCRBY by `incr`, the sum of the batch's increments of the field
--                         (within 64 bits: the client makes several ops of a larger sum);
--                         `most` and `least` are the highest and lowest of its running sums,
--                         in batch order: each, added to the total, must stay within 64 bits
--   Z k member incr       ZINCRBY
--   S k n member*n        SADD
-- Returns 1 when written; when a total would pass 64 bits on the way (HINCRBY refuses past
-- 2^63 - 1 or -2^63), {'totals', the field's stored value or '0' for each H op} and writes
-- nothing: the client rejects the events that take it there and sends the rest again.
-- Any other failure is an error reply naming the key (and field), before anything is written.

local types = {s = 'set', h = 'hash', z = 'zset', b = 'string', n = 'none'}
local kinds = ARGV[1]
for i = 1, #KEYS do
  local want = types[string.sub(kinds, i, i)]
  local have = redis.call('TYPE', KEYS[i])['ok']
  if want == 'none' and have ~= 'none' then
    return {'elsewhere', KEYS[i]}
  end
  if have ~= 'none' and have ~= want then
    return redis.error_reply('trk: key ' .. KEYS[i] .. ' holds a ' .. have .. ', not a ' .. want)
  end
end

local function integer(text)
  return text == '0' or (#text <= 20 and string.match(text, '^%-?[1-9]%d*$') ~= nil)
end

-- Lua's numbers are doubles, exact up to 2^53 only: an integer's text (20 digits at most) is
-- held as two exact numbers, high * 10^10 + low with 0 <= low < 10^10.
local E10 = 1e10
local function normal(high, low)
  while low >= E10 do low, high = low - E10, high + 1 end
  while low < 0 do low, high = low + E10, high - 1 end
  return high, low
end
local function parts(text)
  local sign, digits = 1, text
  if string.sub(text, 1, 1) == '-' then sign, digits = -1, string.sub(text, 2) end
  local cut = #digits - 10
  local high = cut > 0 and tonumber(string.sub(digits, 1, cut)) or 0
  return normal(sign * high, sign * tonumber(string.sub(digits, math.max(cut, 0) + 1)))
end
-- whether high * 10^10 + low is within -2^63 .. 2^63 - 1, what HINCRBY keeps
local function within(high, low)
  if high > 922337203 or high < -922337204 then return false end
  return (high ~= 922337203 or low <= 6854775807) and (high ~= -922337204 or low >= 3145224192)
end

-- HINCRBY fails on a field that is not an integer, or past 64 bits: check each one first.
local running = {}  -- key -> field -> {high, low}: the total after the ops before
local totals = {'totals'}
local past = false
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'I' then
    i = i + 4
  elseif op == 'H' then
    local key, field = KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2]
    local stored = redis.call('HGET', key, field)
    running[key] = running[key] or {}
    local base = running[key][field]
    if not base then
      base = {0, 0}
      if stored then
        local fits = integer(stored)
        if fits then
          base = {parts(stored)}
          fits = within(base[1], base[2])
        end
        if not fits then
          return redis.error_reply('trk: field ' .. field .. ' of ' .. key .. ' holds '
            .. stored .. ', not an integer HINCRBY can add to')
        end
      end
    end
    for j = 3, 5 do
      local high, low = parts(ARGV[i + j])
      high, low = normal(base[1] + high, base[2] + low)
      if not within(high, low) then past = true end
      if j == 3 then running[key][field] = {high, low} end
    end
    totals[#totals + 1] = stored or '0'
    i = i + 6
  elseif op == 'Z' then
    i = i + 4
  elseif op == 'S' then
    i = i + 3 + tonumber(ARGV[i + 2])
  else
    return redis.error_reply('trk: unknown op ' .. tostring(op))
  end
end
if past then
  return totals
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
    i = i + 6
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
