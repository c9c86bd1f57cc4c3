-- evaluate.lua: evaluate actor-set expressions over bitmaps of one slot, answer on the server.
-- KEYS[1..n]   operand keys; a missing key is the empty set
-- KEYS[n+1..]  scratch keys for intermediate results (each gets a TTL the moment it is made)
-- ARGV[1]      n, the number of operand keys
-- ARGV[2]      scratch TTL in milliseconds
-- ARGV[3..]    a postfix program:
--   k i        push operand KEYS[i]
--   or m | and m | xor m    pop m sets, push their union / intersection / symmetric difference
--   diff       pop b, pop a, push a - b
--   not i      pop a, push KEYS[i] - a (KEYS[i] is the set of every actor of the shard)
--   =          pop a set, append its size (BITCOUNT) to the answer
--   ? off      pop a set, append 1 if bit `off` is set else 0
--   >          pop a set, append the name of a key holding it ("" when empty) for reading;
--              a scratch result is kept until its TTL runs out
-- Returns the appended answers in order. Scratch keys not kept are deleted before returning.
local n_keys = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local next_scratch = n_keys + 1
local made, kept, is_scratch = {}, {}, {}
local stack, out = {}, {}

local function scratch()
  local key = KEYS[next_scratch]
  if key == nil then
    error('bitstat evaluate.lua: not enough scratch keys')
  end
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

local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'k' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    stack[#stack + 1] = redis.call('EXISTS', key) == 1 and key or false
    i = i + 2
  elseif op == 'or' or op == 'xor' or op == 'and' then
    local items = pop(tonumber(ARGV[i + 1]))
    local present, missing = {}, false
    for _, key in ipairs(items) do
      if key then
        present[#present + 1] = key
      else
        missing = true
      end
    end
    if #present == 0 or (op == 'and' and missing) then
      stack[#stack + 1] = false
    else
      stack[#stack + 1] = bitop(string.upper(op), present)
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
    local all = KEYS[tonumber(ARGV[i + 1])]
    if redis.call('EXISTS', all) == 0 then
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
    return redis.error_reply('bitstat evaluate.lua: unknown op ' .. tostring(op))
  end
end

for _, key in ipairs(made) do
  if not kept[key] then
    redis.call('DEL', key)
  end
end
return out
