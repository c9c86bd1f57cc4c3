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
--   B m k*m n high packed           add n offsets (distinct, `high` the highest; packed as
--                                   little-endian uint32s, 4n bytes) to the sets of m keys (a
--                                   bucket's day, week, ...)
--   W m k*m n high packed           B, with the same offsets as a bitmap in the scratch key (a
--                                   P before it) for the keys that are bitmaps already
--   E n packed                      add offsets to sets: n (k, offset) pairs packed as
--                                   little-endian uint32s, a set's pairs consecutive and their
--                                   offsets distinct (the many keys of a backfill that one or a
--                                   few events reach: 3 arguments for all, not 6 or more each)
--   H k n (field incr)*n            HINCRBY
--   N field n packed                HINCRBY field of n hashes: (k, incr) pairs packed as
--                                   little-endian uint32s (an hour's event count of a backfill's
--                                   many hours: 4 arguments for all, not 5 each)
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
--   M m k*m                         more markers of this call's batch part (KEYS[1] is one: a
--                                   part's weeks, record.parts_of): any of them set answers as
--                                   KEYS[1] does, and each is set with it
--   Q k                             a marker that answers when set, never set here (the whole
--                                   event name's, of a part cut into weeks)
--   D k field                       the queue's claim this batch is (queued.py): the batch is
--                                   written only while the claim is held (else it answers "1",
--                                   as a batch seen before: the flush that took the claim over
--                                   applied it), and the claim is forgotten with it (HDEL)
--   T until                         a queue claim's group in another slot than the claim's
--                                   (a cluster's): written only before `until`, milliseconds
--                                   of the server's clock (TIME), the end of the claim's lease
--                                   less a margin, so that a flush stalled past its lease
--                                   writes nothing (else it answers -2: nothing written)
--   C bound                         the values summed by F and Z ops add up to at most `bound`
--                                   in magnitude, in any order (0: the caller checked the order)
--   V m k*m knext kold kmark prefix n (value bucket)*n
--                                   number each value (get or create its id in its bucket hash
--                                   prefix..bucket, next id in KEYS[knext], the hash before
--                                   buckets KEYS[kold], the layout mark KEYS[kmark]: as
--                                   values.lua) and add it to m sets: distinct values the
--                                   client has not numbered yet
-- Actor and value sets (the targets of P/O, B and V) are containers: a small, sparse set is a
-- Redis set of its offsets (an intset: 2-8 bytes a member) and becomes a bitmap (one bit per
-- offset up to its highest) once it is no longer small or no longer sparse; a set is never
-- made from a bitmap again. sets.lua reads both.
-- Returns 1 when applied (or {1, k...}: the indexes in KEYS of the sets that are bitmaps now),
-- the marker's note (text) when this batch id was applied before, -2 when a T op's time is
-- past, -1 when a sum could leave
-- +-1e308 (its final total, or its stored value plus the bound: some order of the batch's
-- events would pass the limit on the way); the caller then reads the totals, rejects the events
-- that carry one past the limit in order, and sends the rest with bound 0. An error naming the
-- key when a target key holds another type (a foreign key).
-- Nothing is written, the batch id included, unless 1 is returned.
-- the integers of the ops (key indexes, counts) as numbers, each text parsed once: many repeat,
-- and tonumber of a text costs two strtod calls (callgrind: 6% of a backfill's instructions)
local int = setmetatable({}, {__index = function(t, text)
  local v = tonumber(text)
  t[text] = v
  return v
end})
local ttl = int[ARGV[1]]
if ttl > 0 then
  local seen = redis.call('GET', KEYS[1])
  if seen then
    return seen
  end
end

local LIMIT = 1e308  -- largest sum kept; below DBL_MAX so summing in any order stays finite
local n_argv = #ARGV

-- n offsets packed as little-endian uint32s, as numbers (redis.call formats an integral number
-- as fast as it takes text): one argument an op, not one an offset, which cost the client
-- and the server more than the decoding here (measured: a 60-day backfill's day keys)
local DECODE = 400  -- offsets an unpack call returns
local formats = {}  -- struct formats of k uint32s, made once a call (a concatenation costs)
local function decoded(packed, n)
  local out
  local pos = 1
  local done = 0
  while done < n do
    local k = math.min(DECODE, n - done)
    local format = formats[k]
    if not format then
      format = '<' .. string.rep('I4', k)
      formats[k] = format
    end
    local got = {struct.unpack(format, packed, pos)}
    pos = got[k + 1]
    if done == 0 then  -- the first numbers are the table (the next position cleared)
      out = got
      out[k + 1] = nil
    else
      for j = 1, k do
        out[done + j] = got[j]
      end
    end
    done = done + k
  end
  return out or {}
end

-- the type each target must have (or be missing), and the sums to check, read from the ops
local want, sums, bound, note = {}, {}, 0, '1'
local markers = {KEYS[1]}  -- set once the batch is written (M: more than one)
local singles = {}  -- the decoded pairs of each E and N op, by its place in ARGV
local function expect(k, kind)
  want[int[k]] = kind
end
local function listed(packed, n, kind)  -- n packed (k, value) pairs, each KEYS[k] of `kind`
  local list = decoded(packed, 2 * n)
  for j = 1, #list, 2 do
    expect(list[j], kind)
  end
  return list
end
local function expect_each(first, m, kind)  -- the m target indexes from ARGV[first] on
  for t = first, first + m - 1 do
    expect(ARGV[t], kind)
  end
end
local i = 2
while i <= n_argv do
  local op = ARGV[i]
  if op == 'P' or op == 'X' then
    i = i + 3
  elseif op == 'B' or op == 'W' then
    local m = int[ARGV[i + 1]]
    expect_each(i + 2, m, 'bits')
    i = i + 5 + m
  elseif op == 'E' then
    singles[i] = listed(ARGV[i + 2], int[ARGV[i + 1]], 'bits')
    i = i + 3
  elseif op == 'N' then
    singles[i] = listed(ARGV[i + 3], int[ARGV[i + 2]], 'hash')
    i = i + 4
  elseif op == 'O' then
    expect(ARGV[i + 1], 'bits')
    i = i + 2
  elseif op == 'C' then
    bound = int[ARGV[i + 1]]
    i = i + 2
  elseif op == 'R' then
    note = ARGV[i + 1]
    i = i + 2
  elseif op == 'M' or op == 'Q' then
    local m = op == 'M' and int[ARGV[i + 1]] or 1
    local first = op == 'M' and i + 2 or i + 1
    for t = first, first + m - 1 do
      local key = KEYS[int[ARGV[t]]]
      local seen = redis.call('GET', key)
      if seen then
        return seen
      end
      if op == 'M' then
        markers[#markers + 1] = key
      end
    end
    i = first + m
  elseif op == 'D' then
    expect(ARGV[i + 1], 'hash')
    if redis.call('HEXISTS', KEYS[int[ARGV[i + 1]]], ARGV[i + 2]) == 0 then
      return '1'
    end
    i = i + 3
  elseif op == 'T' then
    local now = redis.call('TIME')
    if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) >= int[ARGV[i + 1]] then
      return -2
    end
    i = i + 2
  elseif op == 'H' or op == 'F' or op == 'L' or op == 'G' then
    expect(ARGV[i + 1], 'hash')
    local n = int[ARGV[i + 2]]
    if op == 'F' then
      sums[#sums + 1] = {'F', int[ARGV[i + 1]], i + 3, i + 1 + 2 * n}
    end
    i = i + 3 + 2 * n
  elseif op == 'Y' or op == 'Z' then
    local m = int[ARGV[i + 1]]
    local n = int[ARGV[i + 2 + m]]
    local first, last = i + 3 + m, i + 2 + m + 2 * n
    for t = i + 2, i + 1 + m do
      expect(ARGV[t], 'zset')
      if op == 'Z' then
        sums[#sums + 1] = {'Z', int[ARGV[t]], first, last - 1}
      end
    end
    i = last + 1
  elseif op == 'S' then
    expect(ARGV[i + 1], 'set')
    i = i + 3 + int[ARGV[i + 2]]
  elseif op == 'A' then
    local m = int[ARGV[i + 1]]
    expect_each(i + 2, m, 'hll')
    i = i + 3 + m + int[ARGV[i + 2 + m]]
  elseif op == 'V' then
    local m = int[ARGV[i + 1]]
    expect_each(i + 2, m, 'bits')
    expect(ARGV[i + 2 + m], 'string')
    expect(ARGV[i + 3 + m], 'hash')
    expect(ARGV[i + 4 + m], 'string')
    i = i + 7 + m + 2 * int[ARGV[i + 6 + m]]
  else
    return redis.error_reply('bitstat apply.lua: unknown op ' .. tostring(op))
  end
end

local NAMES = {hll = 'HyperLogLog', bits = 'bitmap or set'}
local held = {}  -- what each set's key holds now ('none', 'set' or 'string'), by index in KEYS
for k, kind in pairs(want) do
  local key = KEYS[k]
  local found = redis.call('TYPE', key).ok
  local ok = found == 'none' or found == kind
  if kind == 'hll' then  -- a HyperLogLog is a string that starts with its magic
    ok = found == 'none' or (found == 'string' and redis.call('GETRANGE', key, 0, 3) == 'HYLL')
  elseif kind == 'bits' then
    ok = found == 'none' or found == 'string' or found == 'set'
    held[k] = found
  end
  if not ok then
    return redis.error_reply('bitstat: key ' .. key .. ' holds a ' .. found .. ' where bitstat'
      .. ' keeps a ' .. (NAMES[kind] or kind) .. '; nothing of this batch'
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
  for _, marker in ipairs(markers) do
    redis.call('SET', marker, note, 'EX', ttl)
  end
end

local scratch = KEYS[2]
i = 2
local CHUNK = 1900  -- arguments per call, well under Lua's 8000-slot stack
-- a sorted set takes a batch's increments by union when they number at least 1/4 of its members
-- and the scratch set of them serves several sets (a live batch's day, week, ...), or at least
-- as many as its members when it serves one (a backfill's: a union rewrites the whole set, and
-- a scratch set built for one union cost more than the ZINCRBYs: callgrind, -3.5% of a
-- backfill's instructions, -1.1% of a live stream's)
local UNION_FACTOR = 4
local payload = false  -- whether a P op left bytes in the scratch key

-- Containers. A set stays a Redis set while it is small enough to be an intset (Redis turns a
-- set past set-max-intset-entries, 512 by default, into a hash table of ~40 bytes a member)
-- and sparse: 4 bytes a member against a bitmap's bit per offset up to the highest.
local SET_MAX = 512
local function sparse(n, high)
  return n <= SET_MAX and n * 32 < high
end

-- set bits offs[first..last] (numbers or their text) of the bitmap in `key`: a SETBIT each for
-- a few (the highest first, so that the string grows once), one BITFIELD a chunk for more (a
-- call costs more than its bit: measured, 60 days of random ids below 1M recorded 1.6x faster;
-- building its arguments costs more than a few calls)
local function setbits(key, offs, first, last)
  if last - first < 8 then
    local top, at = -1, first
    for j = first, last do
      local off = tonumber(offs[j])
      if off > top then
        top, at = off, j
      end
    end
    redis.call('SETBIT', key, top, 1)
    for j = first, last do
      if j ~= at then
        redis.call('SETBIT', key, offs[j], 1)
      end
    end
    return
  end
  local step = math.floor(CHUNK / 4)  -- SET u1 offset 1: four arguments a bit
  for j = first, last, step do
    local args = {}
    for u = j, math.min(j + step - 1, last) do
      args[#args + 1] = 'SET'
      args[#args + 1] = 'u1'
      args[#args + 1] = offs[u]
      args[#args + 1] = 1
    end
    redis.call('BITFIELD', key, unpack(args))
  end
end

-- a set's key becomes a bitmap of the same members (and the same TTL)
local function promote(k)
  local key = KEYS[k]
  local members = redis.call('SMEMBERS', key)
  local pttl = redis.call('PTTL', key)
  redis.call('DEL', key)
  setbits(key, members, 1, #members)
  if pttl > 0 then
    redis.call('PEXPIRE', key, pttl)
  end
  held[k] = 'string'
end

-- BITOP and ZUNIONSTORE store their result anew, dropping the key's TTL: kept as it was (a
-- writer still on a schema before configure() added an expiry sends no X op to set it again)
local function keeping_ttl(key, store)
  local pttl = redis.call('PTTL', key)
  store()
  if pttl > 0 then
    redis.call('PEXPIRE', key, pttl)
  end
end

-- BITOP runs word by word only up to the shorter operand and byte by byte after it, so first
-- zero-extend the shorter one (writing past its end changes no bit)
local function or_into(key, from)
  local key_len = redis.call('STRLEN', key)
  local from_len = redis.call('STRLEN', from)
  if key_len < from_len then
    redis.call('SETRANGE', key, from_len - 1, '\0')
  elseif from_len < key_len then
    redis.call('SETRANGE', from, key_len - 1, '\0')
  end
  keeping_ttl(key, function() redis.call('BITOP', 'OR', key, key, from) end)
end

-- add offsets offs[first..last] (distinct, `high` the highest) to the sets of KEYS[k] for each
-- k in ks: SADD into sets that stay sparse, else bits: OR-merged from the scratch key when it
-- holds them (`given`), else set once there and OR-merged when several bitmaps take them
local function add_offsets(ks, offs, first, last, high, given)
  local n = last - first + 1
  local small = sparse(n, high)
  local bitmaps = 0  -- targets that are (or will be) bitmaps, maybe fewer
  for _, k in ipairs(ks) do
    if held[k] == 'string' or not small then
      bitmaps = bitmaps + 1
    end
  end
  local built = given
  for _, k in ipairs(ks) do
    local key = KEYS[k]
    local had = 0  -- members of the set before
    if small and held[k] == 'set' then
      had = redis.call('SCARD', key)
      if had + n > SET_MAX then  -- SADD could make it a hash table: a bitmap first
        promote(k)
      end
    end
    if held[k] ~= 'string' and small then
      for j = first, last, CHUNK do
        had = had + redis.call('SADD', key, unpack(offs, j, math.min(j + CHUNK - 1, last)))
      end
      held[k] = 'set'
      if not sparse(had, high) then
        promote(k)
      end
    else
      if held[k] == 'set' then
        promote(k)
      end
      held[k] = 'string'
      if not given and (bitmaps < 2 or n < 8) then
        setbits(key, offs, first, last)
      else
        if not built then
          redis.call('DEL', scratch)
          setbits(scratch, offs, first, last)
          built = true
        end
        or_into(key, scratch)
      end
    end
  end
  if built then
    redis.call('DEL', scratch)
  end
end

-- (increment, member) pairs of ARGV[first..last] (member, increment)*, as ZADD takes them
local function increments(first, last)
  local out = {}
  for u = first, last, 2 do
    out[#out + 1] = ARGV[u + 1]
    out[#out + 1] = ARGV[u]
  end
  return out
end

local function zadd_all(key, all)
  for j = 1, #all, 2 * CHUNK do
    redis.call('ZADD', key, unpack(all, j, math.min(j + 2 * CHUNK - 1, #all)))
  end
end

while i <= n_argv do
  local op = ARGV[i]
  if op == 'P' then
    redis.call('DEL', scratch)
    redis.call('SETRANGE', scratch, ARGV[i + 1], ARGV[i + 2])
    payload = true
    i = i + 3
  elseif op == 'O' then
    -- many bits: the scratch key holds them as a bitmap (the client chose it for a dense set)
    local k = int[ARGV[i + 1]]
    if held[k] == 'set' then
      promote(k)
    end
    held[k] = 'string'
    or_into(KEYS[k], scratch)
    i = i + 2
  elseif op == 'B' or op == 'W' then
    local m = int[ARGV[i + 1]]
    local ks = {}
    for t = i + 2, i + 1 + m do
      ks[#ks + 1] = int[ARGV[t]]
    end
    local n = int[ARGV[i + 2 + m]]
    local high = int[ARGV[i + 3 + m]]
    add_offsets(ks, decoded(ARGV[i + 4 + m], n), 1, n, high, op == 'W')
    i = i + 5 + m
  elseif op == 'E' then
    local list = singles[i]
    local len = #list
    local j = 1
    while j <= len do  -- a set's pairs are consecutive: its offsets go in at once
      local k, offs, high, count = list[j], {}, -1, 0
      while j <= len and list[j] == k do
        local off = list[j + 1]
        count = count + 1
        offs[count] = off
        if off > high then
          high = off
        end
        j = j + 2
      end
      add_offsets({k}, offs, 1, count, high, false)
    end
    i = i + 3
  elseif op == 'N' then
    local list, name = singles[i], ARGV[i + 1]
    for j = 1, #list, 2 do
      redis.call('HINCRBY', KEYS[list[j]], name, list[j + 1])
    end
    i = i + 4
  elseif op == 'Y' or op == 'Z' then
    -- the same increments go to m sorted sets (a bucket's day, week, month, year). Few members
    -- into a big set: one ZINCRBY each. Many: ZUNIONSTORE with a scratch set of the increments,
    -- which rewrites the whole set but in C, where each ZINCRBY from Lua costs ~5x a member of
    -- a union (measured by replaying batches: a live stream's top items 2.4x less server time).
    -- A set not there yet: one ZADD.
    local m = int[ARGV[i + 1]]
    local n = int[ARGV[i + 2 + m]]
    local first, last = i + 3 + m, i + 2 + m + 2 * n
    local pairs_in_order = nil  -- (increment, member)*n, as ZADD and the scratch set take them
    local scratched = false
    for t = i + 2, i + 1 + m do
      local key = KEYS[int[ARGV[t]]]
      local size = n >= 8 and redis.call('ZCARD', key) or -1
      if size == 0 then
        pairs_in_order = pairs_in_order or increments(first, last)
        zadd_all(key, pairs_in_order)
      elseif size > 0 and n * (m > 1 and UNION_FACTOR or 1) >= size then  -- (see UNION_FACTOR)
        if not scratched then
          redis.call('DEL', scratch)
          pairs_in_order = pairs_in_order or increments(first, last)
          zadd_all(scratch, pairs_in_order)
          scratched = true
        end
        keeping_ttl(key, function() redis.call('ZUNIONSTORE', key, 2, key, scratch) end)
      else
        for u = first, last, 2 do
          redis.call('ZINCRBY', key, ARGV[u + 1], ARGV[u])
        end
      end
    end
    if scratched then
      redis.call('DEL', scratch)
    end
    i = last + 1
  elseif op == 'H' or op == 'F' or op == 'L' or op == 'G' then
    local key = KEYS[int[ARGV[i + 1]]]
    local n = int[ARGV[i + 2]]
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
    local m = int[ARGV[i + 1]]
    local n = int[ARGV[i + 2 + m]]
    local first, last = i + 3 + m, i + 2 + m + n
    for t = i + 2, i + 1 + m do
      local key = KEYS[int[ARGV[t]]]
      for j = first, last, CHUNK do
        redis.call('PFADD', key, unpack(ARGV, j, math.min(j + CHUNK - 1, last)))
      end
    end
    i = last + 1
  elseif op == 'S' then
    local key = KEYS[int[ARGV[i + 1]]]
    local n = int[ARGV[i + 2]]
    for j = i + 3, i + 2 + n, CHUNK do
      redis.call('SADD', key, unpack(ARGV, j, math.min(j + CHUNK - 1, i + 2 + n)))
    end
    i = i + 3 + n
  elseif op == 'X' then
    redis.call('EXPIREAT', KEYS[int[ARGV[i + 1]]], ARGV[i + 2])
    i = i + 3
  elseif op == 'V' then
    local m = int[ARGV[i + 1]]
    local counter, old = KEYS[int[ARGV[i + 2 + m]]], KEYS[int[ARGV[i + 3 + m]]]
    local mark = KEYS[int[ARGV[i + 4 + m]]]
    local prefix, n = ARGV[i + 5 + m], int[ARGV[i + 6 + m]]
    local legacy = redis.call('EXISTS', old) == 1
    local counted = redis.call('EXISTS', counter) == 1
    local upper_free = not counted or redis.call('EXISTS', mark) == 1  -- (as values.lua)
    local ids, high = {}, 0
    for j = i + 7 + m, i + 6 + m + 2 * n, 2 do
      local value, bucket = ARGV[j], prefix .. ARGV[j + 1]
      local id = redis.call('HGET', bucket, value)
      if not id and legacy then
        id = redis.call('HGET', old, value)
        if id then
          redis.call('HSET', bucket, value, id)
          redis.call('HDEL', old, value)
        end
      end
      if not id and not upper_free then  -- the bucket 2,048 further on, of namespaces with
        -- 4,096 (values.lua)
        local upper = prefix .. (int[ARGV[j + 1]] + 2048)
        id = redis.call('HGET', upper, value)
        if id then
          redis.call('HSET', bucket, value, id)
          redis.call('HDEL', upper, value)
        end
      end
      if not id then
        id = redis.call('INCR', counter) - 1
        redis.call('HSET', bucket, value, id)
      end
      ids[#ids + 1] = id
      high = math.max(high, tonumber(id))
    end
    local ks = {}
    for t = i + 2, i + 1 + m do
      ks[#ks + 1] = int[ARGV[t]]
    end
    if not counted then
      redis.call('SET', mark, '2048')
    end
    add_offsets(ks, ids, 1, #ids, high, false)
    i = i + 7 + m + 2 * n
  elseif op == 'C' or op == 'R' or op == 'T' or op == 'Q' then
    i = i + 2
  elseif op == 'M' then
    i = i + 2 + int[ARGV[i + 1]]
  elseif op == 'D' then
    redis.call('HDEL', KEYS[int[ARGV[i + 1]]], ARGV[i + 2])
    i = i + 3
  else
    return redis.error_reply('bitstat apply.lua: unknown op ' .. tostring(op))
  end
end

if payload then  -- (add_offsets deletes what it builds there itself)
  redis.call('DEL', scratch)
end
-- the actor and value sets that are bitmaps now, so the client sends them a bitmap alone from
-- now on (a bitmap never becomes a set again)
local bitmaps = {1}
for k, found in pairs(held) do
  if found == 'string' then
    bitmaps[#bitmaps + 1] = k
  end
end
return #bitmaps > 1 and bitmaps or 1
