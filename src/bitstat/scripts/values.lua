-- values.lua: ids of the distinct values of one property of one event (get or create).
-- KEYS[1]   hash: value -> id
-- KEYS[2]   counter: the next id
-- ARGV      the values
-- Returns their ids, in order. Ids are dense and never reused, so a value has the same id in
-- every bucket and distinct counts over a range are one OR of the buckets' bitmaps.
local out = {}
for j = 1, #ARGV do
  local id = redis.call('HGET', KEYS[1], ARGV[j])
  if not id then
    id = redis.call('INCR', KEYS[2]) - 1
    redis.call('HSET', KEYS[1], ARGV[j], id)
  end
  out[j] = tonumber(id)
end
return out
