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
-- Returns the appended sizes in order.
local n_keys = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
-- value[i]: the key holding set i now, or false when the set is empty. A register may stand
-- for an operand key (never written through); it never stands for another register's key.
local value, written, is_register = {}, {}, {}
for j = n_keys + 1, #KEYS do
  is_register[KEYS[j]] = true
end

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
  written[dest] = true
  value[d] = dest
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
      written[dest] = true
      value[d] = dest
    end
    i = i + 4
  elseif op == 'count' then
    local v = get(at(ARGV[i + 1]))
    out[#out + 1] = v and redis.call('BITCOUNT', v) or 0
    i = i + 2
  else
    return redis.error_reply('bitstat registers.lua: unknown op ' .. tostring(op))
  end
end

for key in pairs(written) do
  redis.call('DEL', key)
end
return out
