"""The Lua scripts of the Redis backend: every multi-step update, atomic against other clients.

Cache bookkeeping keeps two sorted sets per namespace beside the entries themselves:
``lru`` (cache key -> last use) and ``expires`` (cache key -> expiry time on the callers'
clock, for entries with a TTL). Redis drops an entry's string at its ``PX`` on its own, but
never a sorted-set member, so the put and stats scripts purge members whose expiry has passed
(and the entries, in case the callers' clock runs ahead of the server's). Every script that
touches one set touches the other, so ``expires`` is always a subset of ``lru``.
"""

from __future__ import annotations

PURGE_LIMIT = 1000
"""Most expired cache entries one put or stats call purges, so one call never blocks Redis for
long after a mass expiry; the rest go on the next calls (stats still counts them out exactly)."""

# purge(lru, expires, entry key prefix, now, limit): drop entries expired at `now`; return how many.
_PURGE = """
local function purge(lru, expires, prefix, now, limit)
  local dead = redis.call('ZRANGEBYSCORE', expires, '-inf', now, 'LIMIT', 0, limit)
  if #dead == 0 then return 0 end
  local entries = {}
  for i, member in ipairs(dead) do entries[i] = prefix .. member end
  redis.call('DEL', unpack(entries))
  redis.call('ZREM', lru, unpack(dead))
  redis.call('ZREM', expires, unpack(dead))
  return #dead
end
"""

# KEYS: entry, lru, expires. ARGV: now, member.
CACHE_GET = """
local body = redis.call('GET', KEYS[1])
if body then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return body
"""

# KEYS: entry, lru, expires, stats, namespaces.
# ARGV: body, now, member, ttl_ms (0: none), cap (0: none), entry key prefix, ns, expires_at, purge limit.
CACHE_PUT = (
    _PURGE
    + """
purge(KEYS[2], KEYS[3], ARGV[6], ARGV[2], tonumber(ARGV[9]))
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[7])
local evicted = 0
local cap = tonumber(ARGV[5])
if cap > 0 then
  local over = redis.call('ZCARD', KEYS[2]) - cap
  if over > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[2], over)
    local members = {}
    for i = 1, #popped, 2 do
      members[#members + 1] = popped[i]
      evicted = evicted + redis.call('DEL', ARGV[6] .. popped[i])
    end
    redis.call('ZREM', KEYS[3], unpack(members))
    if evicted > 0 then redis.call('HINCRBY', KEYS[4], 'evictions', evicted) end
  end
end
return evicted
"""
)

# KEYS: lru, expires, stats, results. ARGV: now, entry key prefix, purge limit.
# Returns {live cache entries, stats hash as a flat list, results}.
STATS = (
    _PURGE
    + """
purge(KEYS[1], KEYS[2], ARGV[2], ARGV[1], tonumber(ARGV[3]))
local live = redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1])
if live < 0 then live = 0 end
return {live, redis.call('HGETALL', KEYS[3]), redis.call('HLEN', KEYS[4])}
"""
)

# KEYS: namespaces, then the keys whose presence means the namespace holds something
# (lru, expires, results, stats, lengths:tokens, lengths:text). ARGV: ns, stats fields to drop.
# Returns 1 if the namespace was forgotten (nothing left in it).
CLEAR_DONE = """
if #ARGV > 1 then redis.call('HDEL', KEYS[5], unpack(ARGV, 2)) end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"""

# KEYS: parent node, parent children, lengths set, stats, namespaces.
# ARGV: has_parent, key prefix, ns, parent key, then (key, kind, length, depth, body) per node.
NODE_ADD = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('no parent node to add children to')
end
local added = {}
for i = 5, #ARGV, 5 do
  local node = ARGV[2] .. 'node:' .. ARGV[i]
  if redis.call('EXISTS', node) == 0 then
    redis.call('HSET', node, 'parent', ARGV[4], 'kind', ARGV[i + 1], 'length', ARGV[i + 2],
      'depth', ARGV[i + 3], 'body', ARGV[i + 4], 'visits', 0, 'value_sum', 0)
    if ARGV[1] == '1' then redis.call('RPUSH', KEYS[2], ARGV[i]) end
    redis.call('SADD', KEYS[3], ARGV[i + 2])
    added[#added + 1] = ARGV[i]
  end
end
if #added > 0 then
  redis.call('HINCRBY', KEYS[4], 'nodes', #added)
  redis.call('SADD', KEYS[5], ARGV[3])
end
return added
"""

# KEYS: nodes. ARGV: (visits_delta, value_delta) per node. All exist or nothing changes.
NODE_UPDATE = """
for i, node in ipairs(KEYS) do
  if redis.call('EXISTS', node) == 0 then return redis.error_reply('no node #' .. i .. ' to update') end
end
local out = {}
for i, node in ipairs(KEYS) do
  local visits = redis.call('HINCRBY', node, 'visits', ARGV[2 * i - 1])
  local value = redis.call('HINCRBYFLOAT', node, 'value_sum', ARGV[2 * i])
  out[i] = {visits, value}
end
return out
"""

NODE_SET_ROLLOUT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'rollout', ARGV[1])
return 1
"""

# KEYS: claim. ARGV: owner, now, expires, gc_ms (real-time lifetime of the key).
CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'expires')
if cur[1] and cur[1] ~= ARGV[1] and tonumber(cur[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expires', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

SCRIPTS = {
    "cache_get": CACHE_GET,
    "cache_put": CACHE_PUT,
    "stats": STATS,
    "clear_done": CLEAR_DONE,
    "node_add": NODE_ADD,
    "node_update": NODE_UPDATE,
    "node_set_rollout": NODE_SET_ROLLOUT,
    "claim": CLAIM,
    "release": RELEASE,
}
