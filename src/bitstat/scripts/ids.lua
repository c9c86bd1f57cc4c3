-- ids.lua: map actor ids to dense bit offsets (get or create), with a reverse map.
-- KEYS[1]    the next-offset counter
-- KEYS[2..]  the forward bucket (canonical id -> offset) of each id of ARGV[5..], in order (a
--            bucket shared by two ids named twice: an index per id cost a number parsed from
--            text, ~15% of the script's work), then on a cluster the reverse buckets ARGV[3] and
--            up, ARGV[4] of them
-- ARGV[1]    bits of an offset that pick the place inside a reverse bucket (offset >> bits = bucket)
-- ARGV[2]    name prefix of the reverse buckets (same hash tag), on a single server: the script
--            appends the bucket number to it
-- ARGV[3]    the number of the first reverse bucket in KEYS; ARGV[4] how many (0: none, a
--            single server). On a cluster every key the script writes must be declared: one that
--            is not may be on another node while the slot moves, and the script would stop half
--            way (forward entries written, their reverse ones not)
-- ARGV[5..]  the canonical ids, distinct
-- Returns the offsets, one per id, in order; or {-1, next offset}, having written nothing,
-- when the new offsets' reverse buckets are not all in KEYS (the caller names them, calls again).
-- New ids take their offsets with one INCRBY, and consecutive offsets share reverse buckets: one
-- HSET per bucket, not per id.
local bits = tonumber(ARGV[1])
local prefix = ARGV[2]
local declared_from, declared = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, new = {}, {}
for j = 1, #ARGV - 4 do
  local off = redis.call('HGET', KEYS[1 + j], ARGV[4 + j])
  if off then
    out[j] = tonumber(off)
  else
    out[j] = false
    new[#new + 1] = j
  end
end
if #new == 0 then
  return out
end
local size = 2 ^ bits
local first = tonumber(redis.call('GET', KEYS[1]) or '0')

local function reverse_bucket(b)
  if declared == 0 then
    return prefix .. b
  end
  return KEYS[#KEYS - declared + 1 + b - declared_from]
end

if declared > 0 then
  local low, high = math.floor(first / size), math.floor((first + #new - 1) / size)
  if low < declared_from or high >= declared_from + declared then
    return {-1, first}
  end
end
redis.call('INCRBY', KEYS[1], #new)
local bucket, fields = nil, {}
for k, at in ipairs(new) do
  local off = first + k - 1
  local id = ARGV[4 + at]
  out[at] = off
  redis.call('HSET', KEYS[1 + at], id, off)
  local b = math.floor(off / size)
  if b ~= bucket or #fields >= 4000 then
    if bucket then
      redis.call('HSET', reverse_bucket(bucket), unpack(fields))
    end
    bucket, fields = b, {}
  end
  fields[#fields + 1] = off % size
  fields[#fields + 1] = id
end
redis.call('HSET', reverse_bucket(bucket), unpack(fields))
return out
