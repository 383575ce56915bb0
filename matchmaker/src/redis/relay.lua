-- Relays a batch of signals, in order, in one atomic step: each goes out only if both its
-- sender and its receiver are members of its lobby (a member that left sends nothing after
-- its peer_left). The signals for one node go out as one PUBLISH of an `R` envelope:
-- "R\n<peer> <message>\n<peer> <message>…". Called by redis_relay.rs.
-- ARGV: prefix, then per signal: code, from, to, message.
-- Returns {publishes, answers}: one letter per signal, 's' sent, 'g' sender gone,
-- 'n' receiver not a member.
local P = ARGV[1]
local seen = {}
local function member(peer)
  local at = seen[peer]
  if at == nil then
    at = redis.call('GET', P .. 'member:' .. peer) or false
    seen[peer] = at
  end
  return at
end
local lines, order, answers = {}, {}, {}
for i = 2, #ARGV - 3, 4 do
  local code, from, to = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local lead = code .. ' '
  local f = member(from)
  if not f or string.sub(f, 1, #lead) ~= lead then
    answers[#answers + 1] = 'g'
  else
    local t = member(to)
    if not t or string.sub(t, 1, #lead) ~= lead then
      answers[#answers + 1] = 'n'
    else
      local node = string.sub(t, #lead + 1)
      local out = lines[node]
      if not out then
        out = { 'R' }
        lines[node] = out
        order[#order + 1] = node
      end
      out[#out + 1] = to .. ' ' .. ARGV[i + 3]
      answers[#answers + 1] = 's'
    end
  end
end
for _, node in ipairs(order) do
  redis.call('PUBLISH', P .. 'node:' .. node, table.concat(lines[node], '\n'))
end
return { #order, table.concat(answers) }
