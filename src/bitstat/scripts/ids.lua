-- ids.lua: map actor ids to dense bit offsets (get or create), with a reverse map.
-- KEYS[1]    the next-offset counter
-- KEYS[2..]  forward buckets (canonical id -> offset)
-- ARGV[1]    bits of an offset that pick the place inside a reverse bucket (offset >> bits = bucket)
-- ARGV[2]    name prefix of the reverse buckets (same hash tag): a new offset's bucket is only
--            known here, so the script appends the bucket number to the prefix
-- ARGV[3..]  pairs: canonical id, index in KEYS of its forward bucket; ids distinct
-- Returns the offsets, one per pair, in order. New ids take their offsets with one INCRBY, and
-- consecutive offsets share reverse buckets: one HSET per bucket, not per id.
local bits = tonumber(ARGV[1])
local prefix = ARGV[2]
local out, new = {}, {}
for j = 3, #ARGV, 2 do
  local off = redis.call('HGET', KEYS[tonumber(ARGV[j + 1])], ARGV[j])
  if off then
    out[#out + 1] = tonumber(off)
  else
    out[#out + 1] = false
    new[#new + 1] = #out
  end
end
if #new > 0 then
  local first = redis.call('INCRBY', KEYS[1], #new) - #new
  local size = 2 ^ bits
  local bucket, fields = nil, {}
  for k, at in ipairs(new) do
    local off = first + k - 1
    local id = ARGV[1 + 2 * at]
    out[at] = off
    redis.call('HSET', KEYS[tonumber(ARGV[2 + 2 * at])], id, off)
    local b = math.floor(off / size)
    if b ~= bucket or #fields >= 4000 then
      if bucket then
        redis.call('HSET', prefix .. bucket, unpack(fields))
      end
      bucket, fields = b, {}
    end
    fields[#fields + 1] = off % size
    fields[#fields + 1] = id
  end
  redis.call('HSET', prefix .. bucket, unpack(fields))
end
return out
