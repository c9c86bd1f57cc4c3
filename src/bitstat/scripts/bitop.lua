-- bitop.lua: not a script but a function for scripts to include, with the line
-- `-- include: bitop.lua` (expanded by transport.load_script); it has no KEYS or ARGV.
-- bitop_folded(name, dest, keys): dest := BITOP name of keys, at most 16 keys a call (BITOP's
-- fast path): the first chunk is written to dest, each later one folded into it with dest as
-- its first source. If dest is one of the keys it must come first: it is read before it is
-- overwritten only in the first chunk.
local function bitop_folded(name, dest, keys)
  local idx = 1
  while idx <= #keys do
    local chunk = {}
    if idx > 1 then
      chunk[1] = dest
    end
    while #chunk < 16 and idx <= #keys do
      chunk[#chunk + 1] = keys[idx]
      idx = idx + 1
    end
    redis.call('BITOP', name, dest, unpack(chunk))
  end
end
