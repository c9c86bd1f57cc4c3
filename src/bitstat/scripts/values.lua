-- values.lua: ids of the distinct values of one property of one event (get or create).
-- KEYS[1]   hash: value -> id
-- KEYS[2]   counter: the next id
-- ARGV      the values, distinct
-- Returns their ids, in order. Ids are dense and never reused, so a value has the same id in
-- every bucket and distinct counts over a range are one OR of the buckets' bitmaps.
-- A few calls per batch, not per value: HMGET the known, one INCRBY for the new, HSET them.
local CHUNK = 4000  -- arguments per call, under Lua's 8000-slot stack
local out, new = {}, {}
for j = 1, #ARGV, CHUNK do
  local last = math.min(j + CHUNK - 1, #ARGV)
  local found = redis.call('HMGET', KEYS[1], unpack(ARGV, j, last))
  for k = 1, #found do
    if found[k] then
      out[j + k - 1] = tonumber(found[k])
    else
      new[#new + 1] = j + k - 1
    end
  end
end
if #new > 0 then
  local first = redis.call('INCRBY', KEYS[2], #new) - #new
  local pairs_ = {}
  for k, at in ipairs(new) do
    out[at] = first + k - 1
    pairs_[#pairs_ + 1] = ARGV[at]
    pairs_[#pairs_ + 1] = out[at]
    if #pairs_ >= CHUNK then
      redis.call('HSET', KEYS[1], unpack(pairs_))
      pairs_ = {}
    end
  end
  if #pairs_ > 0 then
    redis.call('HSET', KEYS[1], unpack(pairs_))
  end
end
return out
