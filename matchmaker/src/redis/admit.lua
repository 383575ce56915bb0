-- Counts a live connection of a player across the cluster, up to a cap; connections of
-- nodes that stopped beating no longer count. Called by redis_store.rs (RedisStore::admit).
-- ARGV: prefix, player key suffix ('<identity>:<player>'), field ('<node> <conn>'), cap,
--       cutoff (ms: a node whose last beat is older is dead), key lifetime (ms).
-- Returns 1 (admitted) or 0 (the player has the most connections allowed).
local P = ARGV[1]
local key = P .. 'player:' .. ARGV[2]
local cutoff = tonumber(ARGV[5])
for _, field in ipairs(redis.call('HKEYS', key)) do
  local sp = string.find(field, ' ', 1, true)
  local seen = sp and redis.call('ZSCORE', P .. 'nodes', string.sub(field, 1, sp - 1))
  if not seen or tonumber(seen) < cutoff then redis.call('HDEL', key, field) end
end
if redis.call('HLEN', key) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', key, ARGV[3], '1')
redis.call('PEXPIRE', key, ARGV[6])
return 1
