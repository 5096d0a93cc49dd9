"""The Lua scripts of the Redis result store: each runs atomically inside Redis.

A record is one string key holding the JSON of :func:`~microhive.tasks.store.encode_record`
(readable with a plain ``GET``). Field changes are merged in Python, not in Lua: Redis's
cjson would re-encode floats with 14 digits and turn an empty list into an object, so the
scripts only read the ``state`` and compare-and-set whole values by their SHA-1.
"""

from __future__ import annotations

from ...transports.redis.scripts import Script

CREATE = Script(
    "create job",
    """
-- KEYS: job, index of all jobs, index of the queue
-- ARGV: value, ttl ms, score, id, index limit, final (1/0), channel, retried (1/0)
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[8] == '1' and current == ARGV[1] then return 1 end  -- our write, reply lost
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local limit = tonumber(ARGV[5])
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[4])
  local size = redis.call('ZCARD', KEYS[i])
  if size > limit then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, size - limit - 1) end
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
if ARGV[6] == '1' then redis.call('PUBLISH', ARGV[7], ARGV[1]) end
return 1
""",
)
"""Create-if-absent, indexed by ``created_at`` in two trimmed sorted sets (all jobs and the
job's queue) that live as long as their longest-lived record."""

TRANSITION = Script(
    "transition job",
    """
-- KEYS: job   ARGV: expected sha1 ('' = unknown), value, its sha1, ttl ms, final (1/0),
-- channel, retried (1/0)
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local sha = redis.sha1hex(current)
if ARGV[7] == '1' and sha == ARGV[3] then return {3} end  -- our write, reply lost
local record = cjson.decode(current)
local state = record['state']
if state == 'succeeded' or state == 'failed' or state == 'revoked' then return {1} end
if sha ~= ARGV[1] then return {2, current} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
if ARGV[5] == '1' then
  redis.call('PUBLISH', ARGV[6], ARGV[2])
  local meta = record['meta']
  if type(meta) == 'table' and type(meta['notify']) == 'string' then
    redis.call('PUBLISH', meta['notify'], ARGV[2])
  end
end
return {3}
""",
)
"""Compare-and-set: ``{0}`` missing, ``{1}`` already final, ``{2, current}`` the record
changed since the caller read it (merge again), ``{3}`` written. A final value is
published on the job's channel in the same step, so no waiter can miss it, and on the
channel the record names in ``meta.notify`` (its submitter's inbox), if any."""

MISSING, FINAL, CHANGED, WRITTEN = 0, 1, 2, 3

JOIN = Script(
    "join group",
    """
-- KEYS: the group's set   ARGV: member, ttl ms, expected
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
return 0
""",
)
"""The chord counter: a set, so a redelivered member counts once."""
