-- identity.lua: link, merge and forget ids in the id map (ids="map"), all in the id map's slot.
-- An offset is one person: its reverse entry names it (the id ids() yields), and the set
-- <alias prefix><offset> holds the other ids whose forward entries point to it.
-- ARGV[1]  the mode; ARGV[2] the reverse buckets' name prefix; ARGV[3] the alias sets' name
--          prefix; ARGV[4] bits of an offset that pick its field in a reverse bucket
--   link    KEYS[1] the next-offset counter, KEYS[2] the forward bucket of `anon`, KEYS[3] the
--           forward bucket of `user`; ARGV[5] anon, ARGV[6] user (canonical, distinct).
--           Links them where no actor sets change, else says a merge is due:
--           {'same', o}: both point to o already; {'merge', a, u}: each has its own offset,
--           the caller moves a's bits to u, then calls `merged`; {'linked', u}: anon was
--           unknown and now points to user's offset u (made when user was unknown too);
--           {'renamed', a}: user was unknown and now points to anon's offset a, which user
--           names from now on (the name it had joins its aliases).
--   merged  KEYS[1] forward bucket of anon, KEYS[2] of user, KEYS[2 + i] of names[i];
--           ARGV[5] anon, ARGV[6] user, ARGV[7] a, ARGV[8] u, ARGV[9..] names: every id of
--           offset a (its reverse name and aliases, as the caller read them). Points them all to
--           u as aliases, frees a's reverse entry and alias set. {'merged'}; {'same'} when anon
--           points to u already (another call merged them since this one's link: of calls
--           racing, the one answered 'merged' did it; or this call, sent again after its reply
--           was lost); {'stale'} when the ids of a or the offsets differ from what the caller
--           saw (it reads them again and calls again).
--   forget  KEYS[1] the forward bucket of the id asked, KEYS[1 + i] that of names[i]; ARGV[5]
--           the offset o, ARGV[6] the id asked, ARGV[7..] names: every id of o. Deletes their
--           forward entries (those still pointing to o), o's reverse entry and alias set.
--           {'forgotten', n} (n forward entries deleted); {'stale'} as for merged.
-- Every mode: after the keys above, KEYS names the reverse bucket and the alias set of each
-- offset the caller expects the call to touch (link: anon's, user's and the next offset's;
-- merged: a's and u's; forget: o's). An offset's keys not named there: {'stale'}, nothing
-- written (on a cluster a key not declared may be on another node while the slot moves, and
-- the script would stop half way).
local mode = ARGV[1]
local rprefix, aprefix, size = ARGV[2], ARGV[3], 2 ^ tonumber(ARGV[4])
local named = {}
for _, key in ipairs(KEYS) do
  named[key] = true
end

local function reverse(o)
  o = tonumber(o)
  return rprefix .. math.floor(o / size), tostring(o % size)
end

-- whether the caller named the keys of each offset
local function named_all(...)
  for _, o in ipairs({...}) do
    if not (named[(reverse(o))] and named[aprefix .. o]) then
      return false
    end
  end
  return true
end

-- whether names (ARGV[first..]) are exactly the ids of offset o
local function ids_of(o, first)
  local key, field = reverse(o)
  local name = redis.call('HGET', key, field)
  local aliases = aprefix .. o
  local n = redis.call('SCARD', aliases) + (name and 1 or 0)
  if n ~= #ARGV - first + 1 then
    return false
  end
  for j = first, #ARGV do
    if ARGV[j] ~= name and redis.call('SISMEMBER', aliases, ARGV[j]) == 0 then
      return false
    end
  end
  return true
end

if mode == 'link' then
  local anon, user = ARGV[5], ARGV[6]
  local a = redis.call('HGET', KEYS[2], anon)
  local u = redis.call('HGET', KEYS[3], user)
  if a and u then
    if a == u then
      return {'same', a}
    end
    return {'merge', a, u}
  end
  if a then
    if not named_all(a) then
      return {'stale'}
    end
    local key, field = reverse(a)
    local old = redis.call('HGET', key, field)
    redis.call('HSET', KEYS[3], user, a)
    redis.call('HSET', key, field, user)
    redis.call('SREM', aprefix .. a, user)
    if old and old ~= user then
      redis.call('SADD', aprefix .. a, old)
    end
    return {'renamed', a}
  end
  local new = not u
  if new then
    u = redis.call('GET', KEYS[1]) or '0'
  end
  if not named_all(u) then
    return {'stale'}
  end
  if new then
    redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[3], user, u)
    local key, field = reverse(u)
    redis.call('HSET', key, field, user)
  end
  redis.call('HSET', KEYS[2], anon, u)
  redis.call('SADD', aprefix .. u, anon)
  return {'linked', u}
elseif mode == 'merged' then
  local anon, user, a, u = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local now_a = redis.call('HGET', KEYS[1], anon)
  if now_a == u then
    return {'same'}
  end
  if not named_all(a, u) or now_a ~= a or redis.call('HGET', KEYS[2], user) ~= u
      or not ids_of(a, 9) then
    return {'stale'}
  end
  local name_u = redis.call('HGET', reverse(u))
  for j = 9, #ARGV do
    redis.call('HSET', KEYS[j - 6], ARGV[j], u)
    if ARGV[j] ~= name_u then
      redis.call('SADD', aprefix .. u, ARGV[j])
    end
  end
  redis.call('HDEL', reverse(a))
  redis.call('DEL', aprefix .. a)
  return {'merged'}
elseif mode == 'forget' then
  local o = ARGV[5]
  if not named_all(o) or not ids_of(o, 7) then
    return {'stale'}
  end
  local n = 0
  for j = 6, #ARGV do
    if redis.call('HGET', KEYS[j - 5], ARGV[j]) == o then
      n = n + redis.call('HDEL', KEYS[j - 5], ARGV[j])
    end
  end
  redis.call('HDEL', reverse(o))
  redis.call('DEL', aprefix .. o)
  return {'forgotten', n}
end
return redis.error_reply('bitstat identity.lua: unknown mode ' .. tostring(mode))
