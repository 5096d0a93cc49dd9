"""Lua scripts: each runs atomically inside Redis, so two processes never half-do a step.

Times inside scripts come from the server (``TIME``), so producers and consumers on hosts
whose clocks disagree still agree on when a delayed message is due. Scores of the delayed
sorted sets are Unix times in milliseconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

_ADD = """
local function add(stream, maxlen, ...)
  if maxlen > 0 then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', ...)
  end
  return redis.call('XADD', stream, '*', ...)
end
"""

SCHEDULE = Script(
    "schedule",
    _NOW
    + """
-- KEYS: sorted set [, stream]   ARGV: delay ms, data [, group, entry id to acknowledge]
local due = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[2])
if ARGV[4] then
  redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
end
return string.format('%.0f', due)
""",
)
"""A delayed send (into the queue's ``:delayed`` set) or a delayed retry (into the group's
``:retry:<group>`` set, acknowledging the failed entry in the same step)."""

REQUEUE = Script(
    "requeue",
    _ADD
    + """
-- KEYS: stream   ARGV: data, group, entry id, maxlen
add(KEYS[1], tonumber(ARGV[4]), 'data', ARGV[1], 'group', ARGV[2])
return redis.call('XACK', KEYS[1], ARGV[2], ARGV[3])
""",
)
"""A retry without delay: the next attempt goes to the back of the stream for this group only."""

DEAD_LETTER = Script(
    "dead_letter",
    _ADD
    + """
-- KEYS: stream, dead-letter stream
-- ARGV: group, entry id, maxlen of the dead-letter stream, then field/value pairs
add(KEYS[2], tonumber(ARGV[3]), unpack(ARGV, 4))
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
""",
)

MOVE = Script(
    "move",
    _NOW
    + _ADD
    + """
-- KEYS: stream, delayed set, retry set of the group   ARGV: limit, group, maxlen
-- Moves what is due into the stream; returns {moved, ms until the next is due or -1}.
local limit = tonumber(ARGV[1])
local maxlen = tonumber(ARGV[3])
local moved = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  add(KEYS[1], maxlen, 'data', member)
end
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  moved = moved + #due
end
due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  add(KEYS[1], maxlen, 'data', member, 'group', ARGV[2])
end
if #due > 0 then
  redis.call('ZREM', KEYS[3], unpack(due))
  moved = moved + #due
end
local wait = -1
for i = 2, 3 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if #first > 0 then
    local ms = math.max(0, tonumber(first[2]) - now)
    if wait < 0 or ms < wait then wait = ms end
  end
end
return {moved, wait}
""",
)

REQUEUE_DEAD = Script(
    "requeue_dead",
    _ADD
    + """
-- KEYS: target stream, dead-letter stream
-- ARGV: maxlen, then per letter: its dead entry id, n, then n field/value items
-- Each letter still there is added to the target, then deleted; returns how many.
local maxlen = tonumber(ARGV[1])
local i = 2
local moved = 0
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if #redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i]) > 0 then
    add(KEYS[1], maxlen, unpack(ARGV, i + 2, i + 1 + n))
    redis.call('XDEL', KEYS[2], ARGV[i])
    moved = moved + 1
  end
  i = i + 2 + n
end
return moved
""",
)
"""Dead letters back into a stream: published, then removed, atomically per batch."""

_GROUPS = """
local function groups_of(stream)
  local found = {}
  for _, flat in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #flat, 2 do info[flat[i]] = flat[i + 1] end
    found[#found + 1] = info
  end
  return found
end
"""

TRIM = Script(
    "trim",
    _GROUPS
    + """
-- KEYS: stream. Deletes the entries every consumer group has acknowledged: those older
-- than each group's oldest pending entry, or than its last delivered entry when none is
-- pending. Without groups nothing is deleted (the messages wait for their first consumer).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = groups_of(KEYS[1])
if #groups == 0 then return 0 end
local best_ms, best_seq
for _, info in ipairs(groups) do
  local ms, seq
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', KEYS[1], info['name'])
    ms, seq = string.match(summary[2], '(%d+)-(%d+)')
    ms, seq = tonumber(ms), tonumber(seq)
  else
    ms, seq = string.match(info['last-delivered-id'], '(%d+)-(%d+)')
    ms, seq = tonumber(ms), tonumber(seq) + 1
  end
  if best_ms == nil or ms < best_ms or (ms == best_ms and seq < best_seq) then
    best_ms, best_seq = ms, seq
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', best_ms, best_seq))
""",
)

LENGTH = Script(
    "length",
    _GROUPS
    + """
-- KEYS: stream, delayed set   ARGV: key prefix of the groups' retry sets
-- Not yet acknowledged: delayed + for the group furthest behind, entries not yet
-- delivered to it + its pending entries + its scheduled retries.
local delayed = redis.call('ZCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return delayed end
local groups = groups_of(KEYS[1])
if #groups == 0 then return delayed + redis.call('XLEN', KEYS[1]) end
local most = 0
for _, info in ipairs(groups) do
  local lag = info['lag']
  if not lag then
    lag = #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+')
  end
  local n = tonumber(info['pending']) + tonumber(lag) + redis.call('ZCARD', ARGV[1] .. info['name'])
  if n > most then most = n end
end
return delayed + most
""",
)

ALL = (SCHEDULE, REQUEUE, DEAD_LETTER, MOVE, TRIM, LENGTH, REQUEUE_DEAD)
