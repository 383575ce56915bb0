-- Relays a signal: if both the sender and the receiver are members of the lobby, publish
-- it to the receiver's node, in one atomic step (a member that left sends nothing after
-- its peer_left). Called by redis_store.rs (RedisStore::relay).
-- ARGV: prefix, code, from, to, payload. Returns 'sent', 'gone' (sender) or 'not_member'.
local P, code = ARGV[1], ARGV[2]
local lead = code .. ' '
local from = redis.call('GET', P .. 'member:' .. ARGV[3])
if not from or string.sub(from, 1, #lead) ~= lead then return 'gone' end
local to = redis.call('GET', P .. 'member:' .. ARGV[4])
if not to or string.sub(to, 1, #lead) ~= lead then return 'not_member' end
redis.call('PUBLISH', P .. 'node:' .. string.sub(to, #lead + 1), ARGV[5])
return 'sent'
