-- counters.lua: add up counter hashes, or rank the members of sorted sets, of one slot.
-- ARGV[1] 'hsum': KEYS are hashes (missing ones add nothing); ARGV[2..] optional field names
--         (none: every field). Returns a flat list field, total ('%.17g' text).
-- ARGV[1] 'zsum': KEYS[1] is a scratch key, KEYS[2..] sorted sets; returns the flat member,
--         score list of their union with scores added.
-- ARGV[1] 'top':  KEYS[1] is a scratch key, KEYS[2..] sorted sets; ARGV[2] limit,
--         ARGV[3] scratch TTL in ms, ARGV[4] 'all-ties' to return every member tied at the cut
--         (when the caller orders ties differently from member bytes). Ranks members by total
--         score, descending, ties by member ascending, and returns the first `limit` (plus the
--         ties) as a flat list member, score.
local mode = ARGV[1]

local function fmt(x)
  return string.format('%.17g', x)
end

if mode == 'hsum' then
  local totals, order = {}, {}
  local function add(f, v)
    if v then
      local old = totals[f]
      if old == nil then
        order[#order + 1] = f
        totals[f] = tonumber(v)
      else
        totals[f] = old + tonumber(v)
      end
    end
  end
  local fields = {}
  for j = 2, #ARGV do
    fields[#fields + 1] = ARGV[j]
  end
  for _, key in ipairs(KEYS) do
    if #fields > 0 then
      local values = redis.call('HMGET', key, unpack(fields))
      for j, f in ipairs(fields) do
        add(f, values[j])
      end
    else
      local flat = redis.call('HGETALL', key)
      for j = 1, #flat, 2 do
        add(flat[j], flat[j + 1])
      end
    end
  end
  local out = {}
  for _, f in ipairs(order) do
    out[#out + 1] = f
    out[#out + 1] = fmt(totals[f])
  end
  return out
elseif mode == 'zsum' then
  if #KEYS == 2 then
    return redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  end
  local sources = {}
  for j = 2, #KEYS do
    sources[#sources + 1] = KEYS[j]
  end
  redis.call('ZUNIONSTORE', KEYS[1], #sources, unpack(sources))
  local out = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  redis.call('UNLINK', KEYS[1])
  return out
elseif mode == 'top' then
  local limit = tonumber(ARGV[2])
  local ttl = tonumber(ARGV[3])
  local src = KEYS[2]
  local scratch = false
  if #KEYS > 2 then
    scratch = KEYS[1]
    local sources = {}
    for j = 2, #KEYS do
      sources[#sources + 1] = KEYS[j]
    end
    redis.call('ZUNIONSTORE', scratch, #sources, unpack(sources))
    redis.call('PEXPIRE', scratch, ttl)
    src = scratch
  end
  local out = {}
  local cut = redis.call('ZRANGE', src, limit - 1, limit - 1, 'REV', 'WITHSCORES')
  if #cut == 0 then
    local all = redis.call('ZRANGE', src, '+inf', '-inf', 'BYSCORE', 'REV', 'WITHSCORES')
    out = all
  else
    local kth = cut[2]
    local above = redis.call('ZRANGE', src, '+inf', '(' .. kth, 'BYSCORE', 'REV', 'WITHSCORES')
    local ties
    if ARGV[4] == 'all-ties' then
      ties = redis.call('ZRANGE', src, kth, kth, 'BYSCORE', 'WITHSCORES')
    else
      ties = redis.call('ZRANGE', src, kth, kth, 'BYSCORE', 'LIMIT', 0, limit - #above / 2,
        'WITHSCORES')
    end
    for _, v in ipairs(above) do
      out[#out + 1] = v
    end
    for _, v in ipairs(ties) do
      out[#out + 1] = v
    end
  end
  if scratch then
    redis.call('UNLINK', scratch)  -- a big sorted set is freed off the main thread
  end
  return out
end
return redis.error_reply('bitstat counters.lua: unknown mode ' .. tostring(mode))
