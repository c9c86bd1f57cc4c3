-- ids.lua: map actor ids to dense bit offsets (get or create), with a reverse map.
-- KEYS[1]    the next-offset counter
-- KEYS[2..]  forward buckets (canonical id -> offset)
-- ARGV[1]    bits of an offset that pick the place inside a reverse bucket (offset >> bits = bucket)
-- ARGV[2]    name prefix of the reverse buckets (same hash tag): a new offset's bucket is only
--            known here, so the script appends the bucket number to the prefix
-- ARGV[3..]  pairs: canonical id, index in KEYS of its forward bucket
-- Returns the offsets, one per pair, in order.
local bits = tonumber(ARGV[1])
local prefix = ARGV[2]
local out = {}
for j = 3, #ARGV, 2 do
  local id = ARGV[j]
  local fwd = KEYS[tonumber(ARGV[j + 1])]
  local off = redis.call('HGET', fwd, id)
  if not off then
    off = redis.call('INCR', KEYS[1]) - 1
    redis.call('HSET', fwd, id, off)
    redis.call('HSET', prefix .. math.floor(off / 2 ^ bits), off % 2 ^ bits, id)
  end
  out[#out + 1] = tonumber(off)
end
return out
