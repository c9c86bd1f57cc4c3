-- registers.lua: set algebra over bitmaps of one slot, with registers that hold intermediate sets
-- for reuse (evaluate.lua's expressions are trees and cannot share a result; a running count of
-- active days or the steps of a funnel reached so far needs to).
-- KEYS[1..n]    operand keys, read only; a missing key is the empty set
-- KEYS[n+1..]   register keys: scratch, each given a TTL when written, all deleted at the end
-- ARGV[1]       n, the number of operand keys
-- ARGV[2]       scratch TTL in milliseconds
-- ARGV[3..]     instructions; a set is named by a number: i > 0 is operand KEYS[i], -r is the
--               r-th register, KEYS[n + r]:
--   or d m s1..sm    register d := s1 | ... | sm      (d may be one of the sources)
--   and d m s1..sm   register d := s1 & ... & sm      (d may be one of the sources)
--   xor d m s1..sm   register d := s1 ^ ... ^ sm      (d may be one of the sources)
--   diff d a b       register d := a - b              (d must not be a; it may be b)
--   count s          append the size of s (BITCOUNT) to the answer
--   andcount d m s1..sm   append the size of s1 & ... & sm: through register d like `and`, or,
--                    when one source's size was counted and is small, by testing that set's
--                    members in the other sources (BITFIELD_RO), writing nothing
-- Returns the appended sizes in order.
local n_keys = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
-- value[i]: the key holding set i now, or false when the set is empty. A register may stand
-- for an operand key (never written through); it never stands for another register's key.
local value, written, is_register = {}, {}, {}
for j = n_keys + 1, #KEYS do
  is_register[KEYS[j]] = true
end
-- by key: sizes counted, and the members of small sets (forgotten when the key is written)
local size, members_of = {}, {}
-- testing one bit costs about what BITOP AND plus BITCOUNT spend on 2000 bytes (measured)
local PROBE_BYTES = 2000

-- a set's index in KEYS
local function at(x)
  x = tonumber(x)
  return x < 0 and n_keys - x or x
end

local function get(i)
  local v = value[i]
  if v == nil then
    if i > n_keys then
      error('bitstat registers.lua: register ' .. i .. ' read before it was written')
    end
    v = redis.call('EXISTS', KEYS[i]) == 1 and KEYS[i] or false
    value[i] = v
  end
  return v
end

local function reg(d)
  if d <= n_keys or KEYS[d] == nil then
    error('bitstat registers.lua: ' .. d .. ' is not a register')
  end
  return KEYS[d]
end

-- BITOP with at most 16 sources per call (its fast path); dest first if it is a source, so
-- folding the later chunks into dest never reads a dest already overwritten.
local function bitop(op, d, sources)
  local dest = reg(d)
  if #sources == 1 and sources[1] == dest then
    return
  end
  local ordered = {}
  for _, key in ipairs(sources) do
    if key == dest then
      table.insert(ordered, 1, key)
    else
      ordered[#ordered + 1] = key
    end
  end
  local idx = 1
  while idx <= #ordered do
    local chunk = {}
    if idx > 1 then
      chunk[1] = dest
    end
    while #chunk < 16 and idx <= #ordered do
      chunk[#chunk + 1] = ordered[idx]
      idx = idx + 1
    end
    redis.call('BITOP', op, dest, unpack(chunk))
  end
  redis.call('PEXPIRE', dest, ttl)
  written[dest], size[dest], members_of[dest] = true, nil, nil
  value[d] = dest
end

local function count_of(key)
  local n = size[key]
  if n == nil then
    n = redis.call('BITCOUNT', key)
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
    local kept = {}
    for s = 1, #alive, 1000 do
      local args = {}
      for t = s, math.min(s + 999, #alive) do
        args[#args + 1], args[#args + 2], args[#args + 3] = 'GET', 'u1', alive[t]
      end
      for t, b in ipairs(redis.call('BITFIELD_RO', key, unpack(args))) do
        if b == 1 then
          kept[#kept + 1] = alive[s + t - 1]
        end
      end
    end
    alive = kept
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
        longest = math.max(longest, redis.call('STRLEN', key))
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

local out = {}
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'or' or op == 'and' or op == 'xor' then
    local d, m = at(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local present, missing = {}, false
    for j = i + 3, i + 2 + m do
      local v = get(at(ARGV[j]))
      if v then
        present[#present + 1] = v
      else
        missing = true
      end
    end
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
      return redis.error_reply('bitstat registers.lua: diff into its own first operand')
    end
    local a, b = get(ia), get(ib)
    reg(d)
    if not a then
      value[d] = false
    elseif not b then
      assign(d, a)
    else
      -- a - b = a ^ (a & b); d may be b, which is read by the first BITOP only
      local dest = reg(d)
      redis.call('BITOP', 'AND', dest, a, b)
      redis.call('BITOP', 'XOR', dest, a, dest)
      redis.call('PEXPIRE', dest, ttl)
      written[dest], size[dest], members_of[dest] = true, nil, nil
      value[d] = dest
    end
    i = i + 4
  elseif op == 'count' then
    local v = get(at(ARGV[i + 1]))
    out[#out + 1] = v and count_of(v) or 0
    i = i + 2
  elseif op == 'andcount' then
    local d, m = at(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local keys, missing = {}, false
    for j = i + 3, i + 2 + m do
      local v = get(at(ARGV[j]))
      if v then
        keys[#keys + 1] = v
      else
        missing = true
      end
    end
    reg(d)
    out[#out + 1] = (missing or #keys == 0) and 0 or and_count(d, keys)
    i = i + 3 + m
  else
    return redis.error_reply('bitstat registers.lua: unknown op ' .. tostring(op))
  end
end

for key in pairs(written) do
  redis.call('DEL', key)
end
return out
