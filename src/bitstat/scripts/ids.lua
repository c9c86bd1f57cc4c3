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
-- when the reverse buckets of the offsets the ids would take if all were new are not all in
-- KEYS (the caller names them, calls again).
-- New ids take their offsets in order (one HSETNX each) and one INCRBY, and consecutive offsets
-- share reverse buckets: one HSET per bucket, not per id.
local bits = tonumber(ARGV[1])
local prefix = ARGV[2]
local declared_from, declared = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #ARGV - 4
local size = 2 ^ bits
local first = tonumber(redis.call('GET', KEYS[1]) or '0')

local function reverse_bucket(b)
  if declared == 0 then
    return prefix .. b
  end
  return KEYS[#KEYS - declared + 1 + b - declared_from]
end

if declared > 0 then  -- (every id may be new: their offsets' buckets all declared, or none)
  local low, high = math.floor(first / size), math.floor((first + n - 1) / size)
  if low < declared_from or high >= declared_from + declared then
    return {-1, first}
  end
end
-- most ids asked for are new (the client remembers the others): one call for those, not a
-- look and a write. An error (a key of another type) takes back what was written before it,
-- reverse entries too: a forward entry kept without its reverse one stays so (the id is found
-- from then on, its reverse entry never written again)
local out, new, written = {}, {}, {}
local function undo(err)
  for _, at in ipairs(new) do
    redis.call('HDEL', KEYS[1 + at], ARGV[4 + at])
  end
  for _, w in ipairs(written) do
    redis.call('HDEL', w[1], unpack(w[3]))  -- (a group below: its key and fields)
  end
  return err
end
local next_off = first
for j = 1, n do
  local key, id = KEYS[1 + j], ARGV[4 + j]
  local made = redis.pcall('HSETNX', key, id, next_off)
  if made == 1 then
    out[j] = next_off
    new[#new + 1] = j
    next_off = next_off + 1
  elseif made == 0 then
    made = redis.pcall('HGET', key, id)
    out[j] = tonumber(made)
  end
  if type(made) == 'table' then
    return undo(made)
  end
end
if #new == 0 then
  return out
end
-- the reverse entries, a bucket at a time (consecutive offsets share one), 2,000 a call at most
local groups = {}  -- {key, (field value)*, fields} each
local bucket, entries, fields
for _, at in ipairs(new) do
  local off = out[at]
  local b = math.floor(off / size)
  if b ~= bucket or #entries >= 4000 then
    bucket, entries, fields = b, {}, {}
    groups[#groups + 1] = {reverse_bucket(b), entries, fields}
  end
  entries[#entries + 1] = off % size
  entries[#entries + 1] = ARGV[4 + at]
  fields[#fields + 1] = off % size
end
for _, g in ipairs(groups) do
  local done = redis.pcall('HSET', g[1], unpack(g[2]))
  if type(done) == 'table' then
    return undo(done)
  end
  written[#written + 1] = g
end
-- (last: the counter gives out the offsets once all their entries are written)
redis.call('INCRBY', KEYS[1], #new)
return out
