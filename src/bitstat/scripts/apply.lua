-- apply.lua: write one batch's share of keys in one slot, at most once per batch id.
-- KEYS[1]   batch marker key (ignored when ARGV[1] is "0")
-- KEYS[2]   scratch key for OR payloads (deleted before returning)
-- KEYS[3..] target keys; ops below refer to them by their index in KEYS
-- ARGV[1]   seconds to remember the batch id; "0" means the batch has no id
-- ARGV[2..] a flat list of ops, each an op code followed by its arguments:
--   P start payload                 scratch key := client-built bitmap bytes placed at byte `start`
--   O k                             BITOP OR KEYS[k] with the scratch key
--   B k offsets                     set the bits at the packed offsets (uint32 LE) of KEYS[k]
--   H k n (field incr)*n            HINCRBY
--   F k n (field incr)*n            HINCRBYFLOAT
--   Y m k*m n (member incr)*n       add the same increments to the scores of m sorted sets
--   S k n member*n                  SADD
--   A m k*m n value*n               PFADD the same values to m HyperLogLogs
--   X k unixtime                    EXPIREAT (keys of periods with an expiry)
--   L k n (field value)*n           keep the lowest number per field (span: first day)
--   G k n (field value)*n           keep the greatest number per field (span: last day)
-- Returns 1 when applied, 0 when this batch id was applied before (nothing is written).
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) == false then
    return 0
  end
end

local scratch = KEYS[2]
local i = 2
local n_argv = #ARGV
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
  elseif op == 'Y' then
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
    redis.call('DEL', scratch)
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
  else
    return redis.error_reply('bitstat apply.lua: unknown op ' .. tostring(op))
  end
end

redis.call('DEL', scratch)
return 1
