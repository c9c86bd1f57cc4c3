-- holds.lua: the holds of an SDK request on its messages' ids (web/ingest.py), so that two
-- requests sharing a message never both read its marker before either sets it.
-- KEYS      the hold keys of the ids (one slot: the namespace's)
-- ARGV[1]   'hold' or 'release'
-- ARGV[2]   the request's token
-- ARGV[3]   hold: milliseconds a hold is kept if never released (its holder died)
-- hold: 1 when every key was free and is now the token's, 0 (nothing set) when one is held.
-- release: deletes the keys still holding the token (one that outlived its time and was
-- taken since is left to its new holder); how many.
if ARGV[1] == 'hold' then
  for i = 1, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      return 0
    end
  end
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
  end
  return 1
end
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
