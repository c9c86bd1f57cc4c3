-- counters.lua: add up counter hashes, or rank the members of sorted sets, of one slot.
-- ARGV[1] 'hsum': KEYS are hashes (missing ones add nothing); ARGV[2..] optional field names
--         (none: every field). Returns a flat list field, total ('%.17g' text).
-- ARGV[1] 'zsum': KEYS[1] is a scratch key, KEYS[2..] sorted sets; returns the flat member,
--         score list of their union with scores added.
-- ARGV[1] 'top':  KEYS[1] is a scratch key, KEYS[2..] sorted sets; ARGV[2] limit,
--         ARGV[3] scratch TTL in ms, ARGV[4] 'all-ties' to return every member tied at the cut
--         (when the caller orders ties differently from member bytes). Ranks members by total
--         score, descending, ties by member ascending, and returns the first `limit` (plus the
--         ties) as a flat list member, score. Over several sets it first tries the threshold
--         algorithm (below), which returns every member tied at the cut.
local mode = ARGV[1]

-- The top `limit` members by total score over several sorted sets of non-negative scores,
-- without merging them: read every set by rank in growing batches; give each member met its
-- exact total (ZMSCORE on every set); stop once the limit-th best total is above the most an
-- unseen member could still have (the sum of the lowest scores read from each set). Skewed
-- counts (a catalogue's best sellers) stop after a batch or two. Returns every member whose
-- total reaches the limit-th best (ties included) as a flat list member, total; or nil when
-- the sets have been read so deep that one ZUNIONSTORE is cheaper.
local function top_by_threshold(sources, limit)
  local budget = 0
  for _, key in ipairs(sources) do
    budget = budget + redis.call('ZCARD', key)
  end
  budget = budget / 4
  local totals, members = {}, {}
  local depth, batch, read = 0, math.max(16, limit), 0
  while true do
    local frontier, exhausted, fresh = 0, true, {}
    for _, key in ipairs(sources) do
      local part = redis.call('ZRANGE', key, depth, depth + batch - 1, 'REV', 'WITHSCORES')
      for j = 1, #part, 2 do
        local m = part[j]
        if totals[m] == nil then
          totals[m] = 0
          members[#members + 1] = m
          fresh[#fresh + 1] = m
        end
      end
      if #part == 2 * batch then
        exhausted = false
        frontier = frontier + tonumber(part[#part])
      end
      read = read + #part / 2
    end
    for _, key in ipairs(sources) do
      for j = 1, #fresh, 1000 do
        local chunk = {unpack(fresh, j, math.min(j + 999, #fresh))}
        local scores = redis.call('ZMSCORE', key, unpack(chunk))
        for t, m in ipairs(chunk) do
          if scores[t] then
            totals[m] = totals[m] + tonumber(scores[t])
          end
        end
      end
    end
    table.sort(members, function(a, b)
      return totals[a] > totals[b]
    end)
    local kth = members[limit] and totals[members[limit]]
    if exhausted or (kth and kth > frontier) then
      local out = {}
      for _, m in ipairs(members) do
        if kth and totals[m] < kth then
          break
        end
        out[#out + 1] = m
        out[#out + 1] = string.format('%.17g', totals[m])
      end
      return out
    end
    if read > budget then
      return nil
    end
    depth = depth + batch
    batch = batch * 2
  end
end

-- ZUNIONSTORE of any number of sources into dest, a thousand at a time (unpack takes ~8,000
-- values: a range of all supported years is 8,029 keys); scores add in the sources' order, as
-- one call would add them
local UNION_CHUNK = 1000
local function union_into(dest, sources)
  local first = math.min(UNION_CHUNK, #sources)
  redis.call('ZUNIONSTORE', dest, first, unpack(sources, 1, first))
  for from = first + 1, #sources, UNION_CHUNK do
    local to = math.min(from + UNION_CHUNK - 1, #sources)
    redis.call('ZUNIONSTORE', dest, to - from + 2, dest, unpack(sources, from, to))
  end
end

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
  union_into(KEYS[1], sources)
  local out = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  redis.call('UNLINK', KEYS[1])
  return out
elseif mode == 'top' then
  local limit = tonumber(ARGV[2])
  local ttl = tonumber(ARGV[3])
  local src = KEYS[2]
  local scratch = false
  if #KEYS > 2 then
    local sources = {}
    for j = 2, #KEYS do
      sources[#sources + 1] = KEYS[j]
    end
    local found = top_by_threshold(sources, limit)
    if found then
      return found
    end
  end
  if #KEYS > 2 then
    scratch = KEYS[1]
    local sources = {}
    for j = 2, #KEYS do
      sources[#sources + 1] = KEYS[j]
    end
    union_into(scratch, sources)
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
