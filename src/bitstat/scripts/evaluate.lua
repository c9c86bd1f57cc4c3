-- evaluate.lua: evaluate actor-set expressions over bitmaps, answer on the server.
-- One call runs any number of programs, one after the other; each program's keys are in one
-- slot (one id shard). On a single server one call carries every shard's program, on a cluster
-- one call carries one program.
-- ARGV[1]       scratch TTL in milliseconds
-- ARGV[2..]     the programs, each: n_keys n_operands n_code code...
-- KEYS          the programs' keys, in program order; a program's own keys are numbered from 1:
--   1..n_operands         operand keys; a missing key is the empty set
--   n_operands+1..n_keys  scratch keys for intermediate results (given a TTL the moment made)
-- A program's code is postfix:
--   k i        push operand i
--   u m i1..im push the union of operands i1..im (a leaf over several buckets, in one op)
--   or m | and m | xor m    pop m sets, push their union / intersection / symmetric difference
--   diff       pop b, pop a, push a - b
--   not i      pop a, push operand i - a (operand i is the set of every actor of the shard)
--   =          pop a set, append its size (BITCOUNT) to the answer
--   ? off      pop a set, append 1 if bit `off` is set else 0
--   >          pop a set, append the name of a key holding it ("" when empty) for reading;
--              a scratch result is kept until its TTL runs out
-- Returns one list of answers per program. Scratch keys not kept are deleted before returning.
local ttl = tonumber(ARGV[1])

local function run(base, n_operands, n_keys, first, last)
  local next_scratch = base + n_operands + 1
  local made, kept, is_scratch = {}, {}, {}
  local stack, out = {}, {}

  -- whether an operand exists; in the usual case one EXISTS answers for all of them
  local exists = {}
  if n_operands > 0 and n_operands <= 1000
      and redis.call('EXISTS', unpack(KEYS, base + 1, base + n_operands)) == n_operands then
    for j = base + 1, base + n_operands do
      exists[KEYS[j]] = true
    end
  end
  local function present(key)
    local known = exists[key]
    if known == nil then
      known = redis.call('EXISTS', key) == 1
      exists[key] = known
    end
    return known
  end

  local function scratch()
    if next_scratch > base + n_keys then
      error('bitstat evaluate.lua: not enough scratch keys')
    end
    local key = KEYS[next_scratch]
    next_scratch = next_scratch + 1
    made[#made + 1] = key
    is_scratch[key] = true
    return key
  end

  -- BITOP with at most 16 sources per call: its fast path, and no huge unpack().
  local function bitop(op, keys)
    if #keys == 1 then
      return keys[1]
    end
    local dest = scratch()
    local idx = 1
    while idx <= #keys do
      local chunk = {}
      if idx > 1 then
        chunk[1] = dest
      end
      while #chunk < 16 and idx <= #keys do
        chunk[#chunk + 1] = keys[idx]
        idx = idx + 1
      end
      redis.call('BITOP', op, dest, unpack(chunk))
    end
    redis.call('PEXPIRE', dest, ttl)
    return dest
  end

  local function minus(a, b)
    local both = bitop('AND', {a, b})
    local dest = scratch()
    redis.call('BITOP', 'XOR', dest, a, both)
    redis.call('PEXPIRE', dest, ttl)
    return dest
  end

  local function pop(m)
    local items = {}
    for j = #stack - m + 1, #stack do
      items[#items + 1] = stack[j]
      stack[j] = nil
    end
    return items
  end

  local i = first
  while i <= last do
    local op = ARGV[i]
    if op == 'k' then
      local key = KEYS[base + tonumber(ARGV[i + 1])]
      stack[#stack + 1] = present(key) and key or false
      i = i + 2
    elseif op == 'u' then
      local m = tonumber(ARGV[i + 1])
      local found = {}
      for j = i + 2, i + 1 + m do
        local key = KEYS[base + tonumber(ARGV[j])]
        if present(key) then
          found[#found + 1] = key
        end
      end
      stack[#stack + 1] = #found > 0 and bitop('OR', found)
      i = i + 2 + m
    elseif op == 'or' or op == 'xor' or op == 'and' then
      local items = pop(tonumber(ARGV[i + 1]))
      local found, missing = {}, false
      for _, key in ipairs(items) do
        if key then
          found[#found + 1] = key
        else
          missing = true
        end
      end
      if #found == 0 or (op == 'and' and missing) then
        stack[#stack + 1] = false
      else
        stack[#stack + 1] = bitop(string.upper(op), found)
      end
      i = i + 2
    elseif op == 'diff' then
      local pair = pop(2)
      local a, b = pair[1], pair[2]
      if a and b then
        stack[#stack + 1] = minus(a, b)
      else
        stack[#stack + 1] = a
      end
      i = i + 1
    elseif op == 'not' then
      local a = pop(1)[1]
      local all = KEYS[base + tonumber(ARGV[i + 1])]
      if not present(all) then
        stack[#stack + 1] = false
      elseif a then
        stack[#stack + 1] = minus(all, a)
      else
        stack[#stack + 1] = all
      end
      i = i + 2
    elseif op == '=' then
      local a = pop(1)[1]
      out[#out + 1] = a and redis.call('BITCOUNT', a) or 0
      i = i + 1
    elseif op == '?' then
      local a = pop(1)[1]
      out[#out + 1] = a and redis.call('GETBIT', a, ARGV[i + 1]) or 0
      i = i + 2
    elseif op == '>' then
      local a = pop(1)[1]
      if a and is_scratch[a] then
        kept[a] = true
      end
      out[#out + 1] = a or ''
      i = i + 1
    else
      error('bitstat evaluate.lua: unknown op ' .. tostring(op))
    end
  end

  for _, key in ipairs(made) do
    if not kept[key] then
      redis.call('DEL', key)
    end
  end
  return out
end

local answers = {}
local base, at = 0, 2
while at <= #ARGV do
  local n_keys, n_operands, n_code = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  answers[#answers + 1] = run(base, n_operands, n_keys, at + 3, at + 2 + n_code)
  base = base + n_keys
  at = at + 3 + n_code
end
return answers
