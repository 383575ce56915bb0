-- Commits one lobby change if the lobby is still at the revision it was read at, then
-- publishes its notices to the nodes of their recipients: all in one atomic step, so
-- notices leave in commit order. Called by redis_store.rs (RedisStore::commit).
-- ARGV: prefix, code, expected revision ('' = create: the code must be free),
--       lobby limit (0 = none), key lifetime (ms), then operations:
--   put    rev record created public('1'/'0')  store the record
--   end                                         delete the lobby
--   seat   peer node oldnode('' = none)         index a member and its node
--   unseat peer node                            forget a member
--   grace  peer deadline('' = none)             schedule or cancel a place's grace end
--   pub    node payload                         publish to a node's channel
local P, code, expected = ARGV[1], ARGV[2], ARGV[3]
local lkey = P .. 'lobby:' .. code
local current = redis.call('HGET', lkey, 'rev')
if expected == '' then
  if current then return 'conflict' end
  local max = tonumber(ARGV[4])
  if max > 0 and redis.call('ZCARD', P .. 'lobbies') >= max then return 'limit' end
elseif current ~= expected then
  return 'conflict'
end
local ttl = ARGV[5]
local i, n = 6, #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'put' then
    redis.call('HSET', lkey, 'rev', ARGV[i + 1], 'rec', ARGV[i + 2])
    redis.call('PEXPIRE', lkey, ttl)
    redis.call('ZADD', P .. 'lobbies', ARGV[i + 3], code)
    if ARGV[i + 4] == '1' then
      redis.call('ZADD', P .. 'public', ARGV[i + 3], code)
    else
      redis.call('ZREM', P .. 'public', code)
    end
    i = i + 5
  elseif op == 'end' then
    redis.call('DEL', lkey)
    redis.call('ZREM', P .. 'lobbies', code)
    redis.call('ZREM', P .. 'public', code)
    i = i + 1
  elseif op == 'seat' then
    local place = code .. ' ' .. ARGV[i + 1]
    redis.call('SET', P .. 'member:' .. ARGV[i + 1], code .. ' ' .. ARGV[i + 2], 'PX', ttl)
    if ARGV[i + 3] ~= '' and ARGV[i + 3] ~= ARGV[i + 2] then
      redis.call('SREM', P .. 'node:' .. ARGV[i + 3] .. ':places', place)
    end
    redis.call('SADD', P .. 'node:' .. ARGV[i + 2] .. ':places', place)
    redis.call('PEXPIRE', P .. 'node:' .. ARGV[i + 2] .. ':places', ttl)
    i = i + 4
  elseif op == 'unseat' then
    local mkey = P .. 'member:' .. ARGV[i + 1]
    local held = redis.call('GET', mkey)
    if held and string.sub(held, 1, #code + 1) == code .. ' ' then
      redis.call('DEL', mkey)
    end
    redis.call('SREM', P .. 'node:' .. ARGV[i + 2] .. ':places', code .. ' ' .. ARGV[i + 1])
    i = i + 3
  elseif op == 'grace' then
    local place = code .. ' ' .. ARGV[i + 1]
    if ARGV[i + 2] == '' then
      redis.call('ZREM', P .. 'graces', place)
    else
      redis.call('ZADD', P .. 'graces', ARGV[i + 2], place)
    end
    i = i + 3
  elseif op == 'pub' then
    redis.call('PUBLISH', P .. 'node:' .. ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    return redis.error_reply('squadlink commit: unknown operation ' .. tostring(op))
  end
end
return 'ok'
