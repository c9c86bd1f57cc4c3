-- notes.lua: the notes of `bitstat consume` (streams.py), in their one hash: first entry id ->
-- the note, JSON [batch id, every entry id]; '@' .. entry id -> the first entry id of the note
-- holding it (so noting a batch looks at its own entries, not at every note in flight); the
-- field `identity` is the stream's identity.
-- KEYS[1] the notes hash
-- ARGV[1] the mode
--   note    ARGV[2] a first entry id, ARGV[3] a note of a new batch (its first entry that).
--           Writes it unless a note holds one of its entries already (a batch another
--           consumer noted since the caller read the notes): each entry is in one note at most.
--           1 written, 0 not.
--   forget  ARGV[2] a first entry id, ARGV[3] its note as the caller read or wrote it.
--           Deletes the note if it is still that one (another, of the same first entry, is a
--           batch noted since). 1 deleted, 0 not.
local notes, mode = KEYS[1], ARGV[1]
local CHUNK = 1000 -- fields a call (unpack's limit)

-- the fields `field(id)` of `ids`, a chunk at a time, each handed to `each(fields)`
local function chunks(ids, field, each)
  for at = 1, #ids, CHUNK do
    local fields = {}
    for k = at, math.min(at + CHUNK - 1, #ids) do
      field(fields, ids[k])
    end
    each(fields)
  end
end

if mode == 'note' then
  local first, ids = ARGV[2], cjson.decode(ARGV[3])[2]
  local held = false
  -- a note starting at one of its entries (a note of a bitstat of before 2026-12-06, first
  -- id -> last id, is only that), or holding one
  chunks(ids, function(fields, id)
    fields[#fields + 1] = id
    fields[#fields + 1] = '@' .. id
  end, function(fields)
    if not held then
      local found = redis.call('HMGET', notes, unpack(fields))
      for k = 1, #found do
        if found[k] then
          held = true
        end
      end
    end
  end)
  if held then
    return 0
  end
  redis.call('HSET', notes, first, ARGV[3])
  chunks(ids, function(fields, id)
    fields[#fields + 1] = '@' .. id
    fields[#fields + 1] = first
  end, function(fields)
    redis.call('HSET', notes, unpack(fields))
  end)
  return 1
end
if mode == 'forget' then
  local first = ARGV[2]
  if redis.call('HGET', notes, first) ~= ARGV[3] then
    return 0
  end
  redis.call('HDEL', notes, first)
  chunks(cjson.decode(ARGV[3])[2], function(fields, id)
    fields[#fields + 1] = '@' .. id
  end, function(fields)
    local found, gone = redis.call('HMGET', notes, unpack(fields)), {}
    for k = 1, #found do
      if found[k] == first then
        gone[#gone + 1] = fields[k]
      end
    end
    if #gone > 0 then
      redis.call('HDEL', notes, unpack(gone))
    end
  end)
  return 1
end
return redis.error_reply('notes.lua: unknown mode ' .. tostring(mode))
