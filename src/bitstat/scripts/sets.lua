-- sets.lua: set algebra over actor bitmaps, answered on the server. Every actor-set question
-- (unique, actor sets and their operators, retention, funnels, ...) is a program of this script.
-- One call runs any number of programs, one after the other; each program's keys are in one
-- slot (one id shard). On a single server one call carries every shard's program, on a cluster
-- one call carries one program.
-- ARGV[1]     TTL in milliseconds of the keys a program writes
-- ARGV[2..]   the programs, each: n_operands n_registers n_code code..., or n_operands
--             n_registers -1 for a program with the code of the one before it (another shard)
-- KEYS        the programs' keys, in program order: a program's n_operands operand keys (read
--             only; a missing key is the empty set), then its n_registers register keys
--             (scratch, given the TTL when written, deleted at the end unless kept); after
--             them, on a cluster, the bitmaps the script may build of operands held as Redis
--             sets (see below; the script names them itself all the same). A cluster checks
--             declared keys before the script runs, and one not declared may be on another
--             node while the slot moves: the script would fail on it
-- In a program's code a set is named by a number: i > 0 is its i-th operand, -r its r-th
-- register. Instructions:
--   or d m s1..sm    register d := s1 | ... | sm      (d may be one of the sources)
--   and d m s1..sm   register d := s1 & ... & sm      (d may be one of the sources)
--   xor d m s1..sm   register d := s1 ^ ... ^ sm      (d may be one of the sources)
--   diff d a b       register d := a - b              (d must not be a; it may be b)
--   count s          append the size of s (BITCOUNT)
--   andcount d m s1..sm   append the size of s1 & ... & sm: through register d like `and`, or,
--                    when one source's size was counted and is small, by testing that set's
--                    members in the other sources (BITFIELD_RO), writing nothing
--   bit s off        append 1 if bit `off` of s is set, else 0
--   keep s d         append the name of a key holding s ("" when s is empty) for reading; a
--                    register named so is not deleted, its TTL ends it. A Redis set is built
--                    as a bitmap in register d, this read's own (a bitmap every reader shares
--                    could be rebuilt or deleted by another while this one reads it in chunks)
-- Returns one list of answers per program.
-- An operand key holds a bitmap, or a Redis set of bit offsets (a small sparse set: see
-- apply.lua's containers). A set is counted (SCARD), tested (SISMEMBER, SMISMEMBER) and probed
-- as it is; BITOP gets it as a bitmap built in {tag}:tmp:set:<key> (deleted at the end, or kept
-- with the TTL when named by `keep`).
local ttl = tonumber(ARGV[1])
-- testing one bit costs about what BITOP AND plus BITCOUNT spend on 2000 bytes (measured)
local PROBE_BYTES = 2000

-- the program running now: where its keys start in KEYS, its last key, and what is known of
-- its sets. value[i]: the key holding set i now (i indexes KEYS), or false when the set is
-- empty; a register may stand for an operand key (never written through), never for another
-- register. By key: sizes counted, members of small sets (forgotten when the key is written).
local base, n_operands, last_key
local value, written, kept, is_register, size, members_of
local is_set = {}  -- by key: holds a Redis set (else a bitmap)

-- a set's index in KEYS
local function at(x)
  x = tonumber(x)
  return base + (x < 0 and n_operands - x or x)
end

local function get(i)
  local v = value[i]
  if v == nil then
    if i > base + n_operands then
      error('bitstat sets.lua: register ' .. (i - base - n_operands) .. ' read before written')
    end
    local kind = redis.call('TYPE', KEYS[i]).ok
    v = kind ~= 'none' and KEYS[i] or false
    is_set[KEYS[i]] = kind == 'set'
    value[i] = v
  end
  return v
end

local function reg(d)
  if d <= base + n_operands or d > last_key then
    error('bitstat sets.lua: ' .. d .. ' is not a register')
  end
  return KEYS[d]
end

local function wrote(d, dest)
  redis.call('PEXPIRE', dest, ttl)
  written[dest], size[dest], members_of[dest] = true, nil, nil
  value[d] = dest
end

-- a bitmap of the Redis set in `key`, written in `built`
local function build(key, built)
  -- emptied, not deleted: on a cluster a key gone while its slot moves is not local
  redis.call('SET', built, '')
  local members = redis.call('SMEMBERS', key)
  table.sort(members, function(a, b) return tonumber(a) > tonumber(b) end)
  for _, off in ipairs(members) do  -- highest first: the string is allocated once
    redis.call('SETBIT', built, off, 1)
  end
  redis.call('PEXPIRE', built, ttl)
  written[built] = true
end

-- the key of a bitmap of the set in `key`: itself, or one built from a Redis set's members
local function bitmap(key)
  if not is_set[key] then
    return key
  end
  local tag = string.match(key, '^{[^}]*}') or ''
  local built = tag .. ':tmp:set:' .. string.sub(key, #tag + 1)
  if not written[built] then
    build(key, built)
  end
  return built
end

-- include: bitop.lua

-- BITOP of sources into register d, folded (bitop_folded) with dest first if it is a source;
-- a Redis set goes in as a bitmap built from it.
local function bitop(op, d, sources)
  local dest = reg(d)
  if #sources == 1 and sources[1] == dest then
    return
  end
  local ordered = sources
  for _, key in ipairs(sources) do
    if key == dest then
      ordered = {}
      for _, other in ipairs(sources) do
        if other == dest then
          ordered[#ordered + 1] = other
        end
      end
      for _, other in ipairs(sources) do
        if other ~= dest then
          ordered[#ordered + 1] = other
        end
      end
      break
    end
  end
  local bitmaps = {}
  for j, key in ipairs(ordered) do
    bitmaps[j] = bitmap(key)
  end
  bitop_folded(op, dest, bitmaps)
  wrote(d, dest)
end

local function count_of(key)
  local n = size[key]
  if n == nil then
    n = redis.call(is_set[key] and 'SCARD' or 'BITCOUNT', key)
    size[key] = n
  end
  return n
end

-- bit offsets of the n members of the set in `key`, a byte found by BITPOS at a time
local function members(key, n)
  local found = members_of[key]
  if found then
    return found
  end
  found = {}
  if is_set[key] then
    for _, off in ipairs(redis.call('SMEMBERS', key)) do
      found[#found + 1] = tonumber(off)
    end
    members_of[key] = found
    return found
  end
  local byte = 0
  while #found < n do
    local p = redis.call('BITPOS', key, 1, byte)
    if p < 0 then
      break
    end
    byte = math.floor(p / 8)
    local b = string.byte(redis.call('GETRANGE', key, byte, byte))
    for k = 0, 7 do
      if bit.band(b, bit.rshift(128, k)) ~= 0 then
        found[#found + 1] = byte * 8 + k
      end
    end
    byte = byte + 1
  end
  members_of[key] = found
  return found
end

-- how many of the members of `small` are in every key of `others`
local function probe(small, n, others)
  local alive = members(small, n)
  for _, key in ipairs(others) do
    local survivors = {}
    for s = 1, #alive, 1000 do
      local args, found = {}, nil
      if is_set[key] then
        found = redis.call('SMISMEMBER', key, unpack(alive, s, math.min(s + 999, #alive)))
      else
        for t = s, math.min(s + 999, #alive) do
          args[#args + 1], args[#args + 2], args[#args + 3] = 'GET', 'u1', alive[t]
        end
        found = redis.call('BITFIELD_RO', key, unpack(args))
      end
      for t, b in ipairs(found) do
        if b == 1 then
          survivors[#survivors + 1] = alive[s + t - 1]
        end
      end
    end
    alive = survivors
  end
  return #alive
end

-- |s1 & ... & sm| of present keys: probe the members of the smallest set of known size when
-- that is cheaper than BITOP AND + BITCOUNT over the longest key
local function and_count(d, keys)
  if #keys == 1 then
    return count_of(keys[1])
  end
  local small, n = nil, nil
  for _, key in ipairs(keys) do
    local known = size[key]
    if known and (n == nil or known < n) then
      small, n = key, known
    end
  end
  if small then
    local others, longest = {}, 0
    for _, key in ipairs(keys) do
      if key ~= small then
        others[#others + 1] = key
        -- a Redis set is probed member by member at about a bitmap's cost
        longest = math.max(longest, is_set[key] and math.huge or redis.call('STRLEN', key))
      end
    end
    if n * #others * PROBE_BYTES <= longest then
      return probe(small, n, others)
    end
  end
  bitop('AND', d, keys)
  return count_of(reg(d))
end

-- d := the one present set `key`: stand for it if it is an operand key, copy it otherwise
local function assign(d, key)
  local dest = reg(d)
  if key == dest then
    return
  end
  if is_register[key] then
    bitop('OR', d, {key})
  else
    value[d] = key
  end
end

-- the present sets among m sources named from ARGV[j], and whether one was missing
local function sources(j, m)
  local present, missing = {}, false
  for k = j, j + m - 1 do
    local v = get(at(ARGV[k]))
    if v then
      present[#present + 1] = v
    else
      missing = true
    end
  end
  return present, missing
end

local function run(first, last)
  local out = {}
  local i = first
  while i <= last do
    local op = ARGV[i]
    if op == 'or' or op == 'and' or op == 'xor' then
      local d, m = at(ARGV[i + 1]), tonumber(ARGV[i + 2])
      local present, missing = sources(i + 3, m)
      reg(d)
      if #present == 0 or (op == 'and' and missing) then
        value[d] = false
      elseif #present == 1 then
        assign(d, present[1])
      else
        bitop(string.upper(op), d, present)
      end
      i = i + 3 + m
    elseif op == 'diff' then
      local d, ia, ib = at(ARGV[i + 1]), at(ARGV[i + 2]), at(ARGV[i + 3])
      if d == ia then
        error('bitstat sets.lua: diff into its own first operand')
      end
      local a, b = get(ia), get(ib)
      local dest = reg(d)
      if not a then
        value[d] = false
      elseif not b then
        assign(d, a)
      else
        -- a - b = a ^ (a & b); d may be b, which is read by the first BITOP only
        a, b = bitmap(a), bitmap(b)
        redis.call('BITOP', 'AND', dest, a, b)
        redis.call('BITOP', 'XOR', dest, a, dest)
        wrote(d, dest)
      end
      i = i + 4
    elseif op == 'count' then
      local v = get(at(ARGV[i + 1]))
      out[#out + 1] = v and count_of(v) or 0
      i = i + 2
    elseif op == 'andcount' then
      local d, m = at(ARGV[i + 1]), tonumber(ARGV[i + 2])
      local present, missing = sources(i + 3, m)
      reg(d)
      out[#out + 1] = (missing or #present == 0) and 0 or and_count(d, present)
      i = i + 3 + m
    elseif op == 'bit' then
      local v = get(at(ARGV[i + 1]))
      if not v then
        out[#out + 1] = 0
      elseif is_set[v] then
        out[#out + 1] = redis.call('SISMEMBER', v, ARGV[i + 2])
      else
        out[#out + 1] = redis.call('GETBIT', v, ARGV[i + 2])
      end
      i = i + 3
    elseif op == 'keep' then
      local v = get(at(ARGV[i + 1]))
      if v and is_set[v] then  -- the caller reads a bitmap: of a Redis set, its own
        local d = at(ARGV[i + 2])
        build(v, reg(d))
        v = reg(d)
      end
      if v and (is_register[v] or written[v]) then
        kept[v] = true
      end
      out[#out + 1] = v or ''
      i = i + 3
    else
      error('bitstat sets.lua: unknown op ' .. tostring(op))
    end
  end

  for key in pairs(written) do
    if not kept[key] then
      redis.call('DEL', key)
    end
  end
  return out
end

local answers = {}
local pos, first, last = 2, nil, nil
base = 0
while pos <= #ARGV do
  local n_registers, n_code
  n_operands, n_registers, n_code = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  if n_code >= 0 then
    first, last = pos + 3, pos + 2 + n_code
  elseif first == nil then
    error('bitstat sets.lua: the first program repeats no code')
  end
  last_key = base + n_operands + n_registers
  value, written, kept, is_register, size, members_of = {}, {}, {}, {}, {}, {}
  is_set = {}
  for j = base + n_operands + 1, last_key do
    is_register[KEYS[j]] = true
  end
  answers[#answers + 1] = run(first, last)
  base = last_key
  pos = pos + 3 + math.max(n_code, 0)
end
return answers
