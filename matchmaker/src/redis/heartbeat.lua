-- Marks a node alive, keeps the cluster's instance id, and lists the places of nodes that
-- stopped beating. Called by redis_store.rs (RedisStore::heartbeat).
-- ARGV: prefix, node, now (ms), node timeout (ms), key lifetime (ms), a new instance id
--       (used only if none is set), refresh ('1': extend the lifetime of this node's
--       lobbies and members).
-- Returns { instance, dead node, its place count, places ('code peer')..., next dead node... }
local P, node, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl = ARGV[5]
redis.call('SET', P .. 'instance', ARGV[6], 'NX')
local out = { redis.call('GET', P .. 'instance') }
redis.call('ZADD', P .. 'nodes', now, node)
for _, key in ipairs({ 'nodes', 'lobbies', 'public', 'graces', 'instance' }) do
  redis.call('PEXPIRE', P .. key, ttl)
end
local own = P .. 'node:' .. node .. ':places'
redis.call('PEXPIRE', own, ttl)
if ARGV[7] == '1' then
  for _, place in ipairs(redis.call('SMEMBERS', own)) do
    local sp = string.find(place, ' ', 1, true)
    if sp then
      redis.call('PEXPIRE', P .. 'lobby:' .. string.sub(place, 1, sp - 1), ttl)
      redis.call('PEXPIRE', P .. 'member:' .. string.sub(place, sp + 1), ttl)
    end
  end
end
local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', '(' .. (now - tonumber(ARGV[4])))
for _, d in ipairs(dead) do
  local places = redis.call('SMEMBERS', P .. 'node:' .. d .. ':places')
  table.insert(out, d)
  table.insert(out, tostring(#places))
  for _, place in ipairs(places) do table.insert(out, place) end
end
return out
