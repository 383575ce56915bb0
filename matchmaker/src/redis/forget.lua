-- Forgets nodes that are still dead (no heartbeat since the timeout) and whose players'
-- places were all taken care of. Called by redis_store.rs (RedisStore::forget_nodes).
-- ARGV: prefix, now (ms), node timeout (ms), nodes...
local P, cutoff = ARGV[1], tonumber(ARGV[2]) - tonumber(ARGV[3])
for i = 4, #ARGV do
  local seen = redis.call('ZSCORE', P .. 'nodes', ARGV[i])
  if not seen or tonumber(seen) < cutoff then
    redis.call('ZREM', P .. 'nodes', ARGV[i])
    redis.call('DEL', P .. 'node:' .. ARGV[i] .. ':places')
  end
end
return 'ok'
