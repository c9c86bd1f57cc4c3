-- actors.lua: take one actor's offset out of actor sets, or move it to another offset (an
-- identity merge), in the containers apply.lua writes: a Redis set of decimal offsets (small
-- and sparse) or a bitmap. Every step is idempotent: run again, it changes nothing more.
-- ARGV[1]   the mode; the rest of ARGV and KEYS depend on it:
--   remove  KEYS: actor-set keys; ARGV[2]: the offset. Each key loses the offset (a bitmap
--           left without a bit is deleted). Returns how many keys held it.
--   move    KEYS: pairs (source, target); ARGV[2]: the offset `from`, ARGV[3]: `to`. Where a
--           source holds `from`, its target gains `to` (a target made here takes the source's
--           TTL) and the source loses `from`. Returns how many sources held `from`.
--   probe   KEYS: actor-set keys; ARGV[2]: the offset. Returns, flat, the index in KEYS and
--           the PTTL (-1: none) of every key holding it (for a move across cluster slots).
--   add     KEYS: actor-set keys; ARGV[2]: the offset; ARGV[3..]: a PTTL per key (-1: none)
--           that a key made here takes. Returns how many keys did not hold it yet.
--   shard   KEYS[1]: the namespace's shard set; ARGV[2]: a shard number, added to it.
-- A key of another type than a set or a string (or missing) is left alone.
local mode = ARGV[1]

-- apply.lua's container rule: a set stays a set while small (an intset) and sparse
local SET_MAX = 512
local function sparse(n, high)
  return n <= SET_MAX and n * 32 < high
end

local function holds(key, kind, off)
  if kind == 'string' then
    return redis.call('GETBIT', key, off) == 1
  elseif kind == 'set' then
    return redis.call('SISMEMBER', key, off) == 1
  end
  return false
end

-- a set's key becomes a bitmap of the same members (and the same TTL), as apply.lua does
local function promote(key)
  local members = redis.call('SMEMBERS', key)
  local pttl = redis.call('PTTL', key)
  redis.call('DEL', key)
  for _, m in ipairs(members) do
    redis.call('SETBIT', key, m, 1)
  end
  if pttl > 0 then
    redis.call('PEXPIRE', key, pttl)
  end
end

local function take(key, off)
  if redis.call('TYPE', key).ok == 'set' then  -- read again: a move may have promoted it
    redis.call('SREM', key, off)  -- an empty set is deleted by Redis itself
  else
    redis.call('SETBIT', key, off, 0)
    if redis.call('BITCOUNT', key) == 0 then
      redis.call('DEL', key)
    end
  end
end

-- add `off` to the container in `key`; `pttl` (> 0) for a key made here. true when added
local function give(key, off, pttl)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then
    if sparse(1, tonumber(off)) then
      redis.call('SADD', key, off)
    else
      redis.call('SETBIT', key, off, 1)
    end
    if pttl > 0 then
      redis.call('PEXPIRE', key, pttl)
    end
    return true
  elseif kind == 'set' then
    if redis.call('SISMEMBER', key, off) == 1 then
      return false
    end
    if redis.call('SCARD', key) + 1 > SET_MAX then
      promote(key)
      redis.call('SETBIT', key, off, 1)
    else
      redis.call('SADD', key, off)
      if not sparse(redis.call('SCARD', key), tonumber(off)) then
        promote(key)
      end
    end
    return true
  elseif kind == 'string' then
    return redis.call('SETBIT', key, off, 1) == 0
  end
  return false
end

if mode == 'remove' then
  local off, n = ARGV[2], 0
  for _, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key).ok
    if holds(key, kind, off) then
      take(key, off)
      n = n + 1
    end
  end
  return n
elseif mode == 'move' then
  local from, to, n = ARGV[2], ARGV[3], 0
  for j = 1, #KEYS, 2 do
    local source, target = KEYS[j], KEYS[j + 1]
    local kind = redis.call('TYPE', source).ok
    if holds(source, kind, from) then
      give(target, to, redis.call('PTTL', source))
      take(source, from)
      n = n + 1
    end
  end
  return n
elseif mode == 'probe' then
  local off, out = ARGV[2], {}
  for j, key in ipairs(KEYS) do
    if holds(key, redis.call('TYPE', key).ok, off) then
      out[#out + 1] = j
      out[#out + 1] = redis.call('PTTL', key)
    end
  end
  return out
elseif mode == 'add' then
  local off, n = ARGV[2], 0
  for j, key in ipairs(KEYS) do
    if give(key, off, tonumber(ARGV[2 + j])) then
      n = n + 1
    end
  end
  return n
elseif mode == 'shard' then
  return redis.call('SADD', KEYS[1], ARGV[2])
end
return redis.error_reply('bitstat actors.lua: unknown mode ' .. tostring(mode))
