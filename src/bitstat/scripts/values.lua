-- values.lua: ids of the distinct values of one property of one event (get or create).
-- KEYS[1]   counter: the next id
-- KEYS[2]   the one hash of value -> id that namespaces kept before buckets (read if present)
-- KEYS[3]   the layout mark: set when the property's first values were numbered here, in 2,048
--           buckets; with it no value is looked for 2,048 buckets further on (below)
-- KEYS[4..] on a cluster, the values' buckets (none on a single server). The script names them
--           itself all the same; a cluster checks declared keys before the script runs, and
--           one not declared may be on another node while the slot moves: the script would
--           stop half way (ids given, the counter not moved on)
-- ARGV[1]   the name of the buckets (hashes of value -> id) but their numbers: the client
--           picks a value's bucket (keys.py), the name is made here (same hash tag)
-- ARGV[2]   the number of each value's bucket, in decimal, separated by spaces: one argument
--           for all (an argument costs the client and the server more), and text, which names
--           a bucket without Lua formatting a number (sprintf: 31% of this script's work when
--           the numbers came packed as uint16s)
-- ARGV[3..] the values, distinct
-- Returns their ids, in order. Ids are dense and never reused, so a value has the same id in
-- every bucket and distinct counts over a range are one OR of the buckets' bitmaps. A value
-- found in the old hash, or in the bucket 2,048 further on (namespaces written with 4,096
-- buckets kept a value there when bit 11 of its CRC-32 is set), moves to its bucket (same id).
-- One INCRBY for all the new values.
-- (Ids are handed out in order within the call, so no id is skipped.)
-- values left in the old hash: it is not touched once empty (deleted: on a cluster, a key
-- gone while its slot moves is not local)
local OLD_BUCKETS = 2048  -- how much further on the 4,096 buckets of before kept a value
local legacy = redis.call('HLEN', KEYS[2])
local counted = redis.call('GET', KEYS[1])
local first = tonumber(counted or '0')
-- a property whose first values are numbered now, or were by a version with 2,048 buckets
-- alone (its mark), has none in the buckets 2,048 further on: one call a new value, not two
local upper_free = not counted or redis.call('EXISTS', KEYS[3]) == 1
local next_id = first
local out = {}
local prefix = ARGV[1]
local n = #ARGV - 2
local buckets = {}
for number in string.gmatch(ARGV[2], '%d+') do
  buckets[#buckets + 1] = number
end
for j = 1, n do
  local value, bucket = ARGV[j + 2], prefix .. buckets[j]
  local id
  if legacy > 0 then
    id = redis.call('HGET', bucket, value)
    if not id then
      id = redis.call('HGET', KEYS[2], value)
      if id then
        redis.call('HSET', bucket, value, id)
        redis.call('HDEL', KEYS[2], value)
        legacy = legacy - 1
      end
    end
  end
  if not id then
    -- most values asked for are new (the client remembers the others): one call for those
    if redis.call('HSETNX', bucket, value, next_id) == 1 then
      local upper = not upper_free and prefix .. (buckets[j] + OLD_BUCKETS)  -- (named only if
      -- read: a number in a name costs a sprintf)
      id = upper and redis.call('HGET', upper, value)
      if id then
        redis.call('HSET', bucket, value, id)
        redis.call('HDEL', upper, value)
      else
        id, next_id = next_id, next_id + 1
      end
    else
      id = redis.call('HGET', bucket, value)
    end
  end
  out[#out + 1] = tonumber(id)
end
if next_id > first then
  redis.call('INCRBY', KEYS[1], next_id - first)
  if not counted then
    redis.call('SET', KEYS[3], '2048')
  end
end
return out
