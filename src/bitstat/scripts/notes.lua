-- notes.lua: the notes of `bitstat consume` (streams.py), in their one hash: first entry id ->
-- the note, JSON [batch id, every entry id]; the field `identity` is the stream's identity.
-- KEYS[1] the notes hash
-- ARGV[1] the mode
--   forget  ARGV[2] a first entry id, ARGV[3] its note as the caller read or wrote it.
--           Deletes the note if it is still that one (another, of the same first entry, is a
--           batch noted since). 1 deleted, 0 not.
local notes, mode = KEYS[1], ARGV[1]
if mode == 'forget' then
  if redis.call('HGET', notes, ARGV[2]) == ARGV[3] then
    return redis.call('HDEL', notes, ARGV[2])
  end
  return 0
end
return redis.error_reply('notes.lua: unknown mode ' .. tostring(mode))
