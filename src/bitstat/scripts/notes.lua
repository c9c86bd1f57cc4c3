-- notes.lua: the notes of `bitstat consume` (streams.py), in their one hash: first entry id ->
-- the note, JSON [batch id, every entry id]; the field `identity` is the stream's identity.
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
if mode == 'note' then
  local mine = {}
  for _, id in ipairs(cjson.decode(ARGV[3])[2]) do
    mine[id] = true
  end
  local found = redis.call('HGETALL', notes)
  for i = 1, #found, 2 do
    if found[i] ~= 'identity' then
      if mine[found[i]] then
        return 0
      end
      -- a note of a bitstat of before 2026-12-06 (first id -> last id) is no JSON: its first
      -- id, the field, is all the old consumer's upgrade keeps of it
      local ok, note = pcall(cjson.decode, found[i + 1])
      if ok and type(note) == 'table' and type(note[2]) == 'table' then
        for _, id in ipairs(note[2]) do
          if mine[id] then
            return 0
          end
        end
      end
    end
  end
  redis.call('HSET', notes, ARGV[2], ARGV[3])
  return 1
end
if mode == 'forget' then
  if redis.call('HGET', notes, ARGV[2]) == ARGV[3] then
    return redis.call('HDEL', notes, ARGV[2])
  end
  return 0
end
return redis.error_reply('notes.lua: unknown mode ' .. tostring(mode))
