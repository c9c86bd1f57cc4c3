-- apply.lua: write one batch's share of keys in one slot, at most once per batch id, and all or
-- nothing: Redis does not roll a script back, so everything that could fail midway is checked
-- before the first write.
-- KEYS[1]   batch marker key (ignored when ARGV[1] is "0")
-- KEYS[2]   scratch key for OR payloads (deleted before returning)
-- KEYS[3..] target keys; ops below refer to them by their index in KEYS
-- ARGV[1]   seconds to remember the batch id; "0" means the batch has no id
-- ARGV[2..] a flat list of ops, each an op code followed by its arguments:
--   P start payload                 scratch key := client-built bitmap bytes placed at byte `start`
--   O k                             BITOP OR KEYS[k] with the scratch key
--   B k offsets                     set the bits at the packed offsets (uint32 LE) of KEYS[k]
--   H k n (field incr)*n            HINCRBY
--   F k n (field incr)*n            HINCRBYFLOAT (sums: the result must stay within +-1e308)
--   Y m k*m n (member incr)*n       add the same increments to the scores of m sorted sets
--   Z m k*m n (member incr)*n       Y for sums: every resulting score must stay within +-1e308
--   S k n member*n                  SADD
--   A m k*m n value*n               PFADD the same values to m HyperLogLogs
--   X k unixtime                    EXPIREAT (keys of periods with an expiry)
--   L k n (field value)*n           keep the lowest number per field (span: first day)
--   G k n (field value)*n           keep the greatest number per field (span: last day)
--   R note                          what the batch marker keeps (default "1"): handed back as is
--                                   when the batch id is seen again
--   C bound                         the values summed by F and Z ops add up to at most `bound`
--                                   in magnitude, in any order (0: the caller checked the order)
--   V m k*m kmap knext n value*n    number each value (get or create its id in hash KEYS[kmap],
--                                   next id in KEYS[knext], as values.lua) and set its bit in m
--                                   bitmaps: distinct values the client has not numbered yet
-- Returns 1 when applied, the marker's note (text) when this batch id was applied before, -1 when a sum could leave
-- +-1e308 (its final total, or its stored value plus the bound: some order of the batch's
-- events would pass the limit on the way); the caller then reads the totals, rejects the events
-- that carry one past the limit in order, and sends the rest with bound 0. An error naming the
-- key when a target key holds another type (a foreign key).
-- Nothing is written, the batch id included, unless 1 is returned.
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  local seen = redis.call('GET', KEYS[1])
  if seen then
    return seen
  end
end

local LIMIT = 1e308  -- largest sum kept; below DBL_MAX so summing in any order stays finite
local n_argv = #ARGV

-- the type each target must have (or be missing), and the sums to check, read from the ops
local want, sums, bound, note = {}, {}, 0, '1'
local function expect(k, kind)
  want[tonumber(k)] = kind
end
local i = 2
while i <= n_argv do
  local op = ARGV[i]
  if op == 'P' or op == 'B' or op == 'X' then
    if op == 'B' then expect(ARGV[i + 1], 'string') end
    i = i + 3
  elseif op == 'O' then
    expect(ARGV[i + 1], 'string')
    i = i + 2
  elseif op == 'C' then
    bound = tonumber(ARGV[i + 1])
    i = i + 2
  elseif op == 'R' then
    note = ARGV[i + 1]
    i = i + 2
  elseif op == 'H' or op == 'F' or op == 'L' or op == 'G' then
    expect(ARGV[i + 1], 'hash')
    local n = tonumber(ARGV[i + 2])
    if op == 'F' then
      sums[#sums + 1] = {'F', tonumber(ARGV[i + 1]), i + 3, i + 1 + 2 * n}
    end
    i = i + 3 + 2 * n
  elseif op == 'Y' or op == 'Z' then
    local m = tonumber(ARGV[i + 1])
    local n = tonumber(ARGV[i + 2 + m])
    local first, last = i + 3 + m, i + 2 + m + 2 * n
    for t = i + 2, i + 1 + m do
      expect(ARGV[t], 'zset')
      if op == 'Z' then
        sums[#sums + 1] = {'Z', tonumber(ARGV[t]), first, last - 1}
      end
    end
    i = last + 1
  elseif op == 'S' then
    expect(ARGV[i + 1], 'set')
    i = i + 3 + tonumber(ARGV[i + 2])
  elseif op == 'A' then
    local m = tonumber(ARGV[i + 1])
    for t = i + 2, i + 1 + m do
      expect(ARGV[t], 'hll')
    end
    i = i + 3 + m + tonumber(ARGV[i + 2 + m])
  elseif op == 'V' then
    local m = tonumber(ARGV[i + 1])
    for t = i + 2, i + 1 + m do
      expect(ARGV[t], 'string')
    end
    expect(ARGV[i + 2 + m], 'hash')
    expect(ARGV[i + 3 + m], 'string')
    i = i + 5 + m + tonumber(ARGV[i + 4 + m])
  else
    return redis.error_reply('bitstat apply.lua: unknown op ' .. tostring(op))
  end
end

for k, kind in pairs(want) do
  local key = KEYS[k]
  local found = redis.call('TYPE', key).ok
  local ok = found == 'none' or found == kind
  if kind == 'hll' then  -- a HyperLogLog is a string that starts with its magic
    ok = found == 'none' or (found == 'string' and redis.call('GETRANGE', key, 0, 3) == 'HYLL')
  end
  if not ok then
    return redis.error_reply('bitstat: key ' .. key .. ' holds a ' .. found .. ' where bitstat'
      .. ' keeps a ' .. (kind == 'hll' and 'HyperLogLog' or kind) .. '; nothing of this batch'
      .. ' was written (remove or rename that key, then send the batch again)')
  end
end

local function fits(total)
  return total == total and math.abs(total) <= LIMIT  -- total ~= total: NaN
end
for _, check in ipairs(sums) do
  local kind, key, first, last = check[1], KEYS[check[2]], check[3], check[4]
  local exact = kind == 'F'
  if not exact then
    -- a sorted set: compare its score range with the increments' first, one member at a time
    -- only when the range says a score could leave the limit
    local low = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local high = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    local lo = math.min(tonumber(low[2]) or 0, 0)
    local hi = math.max(tonumber(high[2]) or 0, 0)
    if not fits(math.max(-lo, hi) + bound) then
      return -1
    end
    local dlo, dhi = 0, 0
    for u = first, last, 2 do
      local d = tonumber(ARGV[u + 1])
      dlo, dhi = math.min(dlo, d), math.max(dhi, d)
    end
    exact = not (fits(lo + dlo) and fits(hi + dhi))
  end
  if exact then
    for u = first, last, 2 do
      local old
      if kind == 'F' then
        old = redis.call('HGET', key, ARGV[u])
      else
        old = redis.call('ZSCORE', key, ARGV[u])
      end
      old = tonumber(old) or 0
      if not (fits(old + tonumber(ARGV[u + 1])) and fits(math.abs(old) + bound)) then
        return -1
      end
    end
  end
end

if ttl > 0 then
  redis.call('SET', KEYS[1], note, 'EX', ttl)
end

local scratch = KEYS[2]
i = 2
local CHUNK = 1900  -- bits per BITFIELD call: 4 arguments each, under Lua's 8000-slot stack

while i <= n_argv do
  local op = ARGV[i]
  if op == 'P' then
    redis.call('DEL', scratch)
    redis.call('SETRANGE', scratch, ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'O' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    -- BITOP runs word by word only up to the shorter operand and byte by byte after it, so
    -- first zero-extend the shorter one (writing past its end changes no bit)
    local key_len = redis.call('STRLEN', key)
    local scratch_len = redis.call('STRLEN', scratch)
    if key_len < scratch_len then
      redis.call('SETRANGE', key, scratch_len - 1, '\0')
    elseif scratch_len < key_len then
      redis.call('SETRANGE', scratch, key_len - 1, '\0')
    end
    redis.call('BITOP', 'OR', key, key, scratch)
    i = i + 2
  elseif op == 'B' then
    -- offsets arrive packed as little-endian uint32s: one argument per key, not one per bit
    local key = KEYS[tonumber(ARGV[i + 1])]
    local packed = ARGV[i + 2]
    local count = #packed / 4
    local done = 0
    while done < count do
      local stop = math.min(done + CHUNK, count)
      local args, pos = {}, done * 4 + 1
      for j = 1, (stop - done) * 4, 4 do
        local off
        off, pos = struct.unpack('<I4', packed, pos)
        args[j], args[j + 1], args[j + 2], args[j + 3] = 'SET', 'u1', off, 1
      end
      redis.call('BITFIELD', key, unpack(args))
      done = stop
    end
    i = i + 3
  elseif op == 'Y' or op == 'Z' then
    -- the same increments go to m sorted sets (a bucket's day, week, month, year): build them
    -- once as a scratch set and merge it with ZUNIONSTORE (C speed), except into a set
    -- bigger than the increments (ZUNIONSTORE costs ~1/8 to 1/16 of a ZINCRBY per member of the
    -- result), where ZINCRBY per member avoids rewriting the whole set
    local m = tonumber(ARGV[i + 1])
    local n = tonumber(ARGV[i + 2 + m])
    local first, last = i + 3 + m, i + 2 + m + 2 * n
    local built = false
    for t = i + 2, i + 1 + m do
      local key = KEYS[tonumber(ARGV[t])]
      if n >= 8 and n * 8 >= redis.call('ZCARD', key) then
        if not built then
          redis.call('DEL', scratch)
          local j = first
          while j <= last do
            local args = {}
            local stop = math.min(j + 2 * CHUNK - 1, last)
            for u = j, stop, 2 do
              args[#args + 1] = ARGV[u + 1]
              args[#args + 1] = ARGV[u]
            end
            redis.call('ZADD', scratch, unpack(args))
            j = stop + 1
          end
          built = true
        end
        redis.call('ZUNIONSTORE', key, 2, key, scratch)
      else
        for u = first, last, 2 do
          redis.call('ZINCRBY', key, ARGV[u + 1], ARGV[u])
        end
      end
    end
    if built then
      redis.call('DEL', scratch)
    end
    i = last + 1
  elseif op == 'H' or op == 'F' or op == 'L' or op == 'G' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    local n = tonumber(ARGV[i + 2])
    local j = i + 3
    for _ = 1, n do
      local f, v = ARGV[j], ARGV[j + 1]
      if op == 'H' then
        redis.call('HINCRBY', key, f, v)
      elseif op == 'F' then
        redis.call('HINCRBYFLOAT', key, f, v)
      else
        local old = tonumber(redis.call('HGET', key, f))
        local new = tonumber(v)
        if old == nil or (op == 'L' and new < old) or (op == 'G' and new > old) then
          redis.call('HSET', key, f, v)
        end
      end
      j = j + 2
    end
    i = j
  elseif op == 'A' then
    local m = tonumber(ARGV[i + 1])
    local n = tonumber(ARGV[i + 2 + m])
    local first, last = i + 3 + m, i + 2 + m + n
    for t = i + 2, i + 1 + m do
      local key = KEYS[tonumber(ARGV[t])]
      for j = first, last, CHUNK do
        redis.call('PFADD', key, unpack(ARGV, j, math.min(j + CHUNK - 1, last)))
      end
    end
    i = last + 1
  elseif op == 'S' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    local n = tonumber(ARGV[i + 2])
    for j = i + 3, i + 2 + n, CHUNK do
      redis.call('SADD', key, unpack(ARGV, j, math.min(j + CHUNK - 1, i + 2 + n)))
    end
    i = i + 3 + n
  elseif op == 'X' then
    redis.call('EXPIREAT', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2])
    i = i + 3
  elseif op == 'V' then
    local m = tonumber(ARGV[i + 1])
    local map, counter = KEYS[tonumber(ARGV[i + 2 + m])], KEYS[tonumber(ARGV[i + 3 + m])]
    local n = tonumber(ARGV[i + 4 + m])
    for j = i + 5 + m, i + 4 + m + n do
      local id = redis.call('HGET', map, ARGV[j])
      if not id then
        id = redis.call('INCR', counter) - 1
        redis.call('HSET', map, ARGV[j], id)
      end
      for t = i + 2, i + 1 + m do
        redis.call('SETBIT', KEYS[tonumber(ARGV[t])], id, 1)
      end
    end
    i = i + 5 + m + n
  elseif op == 'C' or op == 'R' then
    i = i + 2
  else
    return redis.error_reply('bitstat apply.lua: unknown op ' .. tostring(op))
  end
end

redis.call('DEL', scratch)
return 1
