"""Leases on Redis: ``SET NX PX`` semantics in Lua, and the last tick run beside the lease.

Key ``<prefix>lease:<name>`` holds the holder's id and expires ``ttl`` after the last
acquire or renewal (``PX``, counted by the server); renew and release are compare-and-act
scripts, so a holder whose lease expired and was taken cannot extend or delete its
successor's. ``<prefix>lease:<name>:tick`` keeps the last tick run; a claim is one script
that checks the holder and that the tick is newer, then records it — an old holder that has
not noticed its lease is gone cannot claim a tick any more.

Each lease has its own connection (a :class:`~.link.Link`), opened at the first operation
and re-opened after an outage, so a busy or broken broker connection never delays renewals.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...leases import TICK_RETENTION, Lease
from .commands import Commands
from .link import Link
from .options import RedisOptions
from .scripts import Script

ACQUIRE = Script(
    "lease_acquire",
    """
-- KEYS: lease   ARGV: holder, ttl ms
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
""",
)

RENEW = Script(
    "lease_renew",
    """
-- KEYS: lease   ARGV: holder, ttl ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""",
)

RELEASE = Script(
    "lease_release",
    """
-- KEYS: lease   ARGV: holder
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""",
)

CLAIM = Script(
    "lease_claim",
    """
-- KEYS: lease, last tick   ARGV: holder, tick, retention ms
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local last = redis.call('GET', KEYS[2])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
""",
)


class RedisLease(Lease):
    def __init__(self, options: RedisOptions, name: str, holder: str, ttl: float) -> None:
        super().__init__(name, holder, ttl)
        self.options = options
        self.key = f"{options.prefix}lease:{name}"
        self.tick_key = f"{self.key}:tick"
        self._ttl_ms = max(1, round(ttl * 1000))
        self._commands = Commands(options, repr(self))

    async def _run(self, script: Script, keys: tuple[str, ...], *args: Any) -> int:
        link = self._commands.link
        if link is None:
            link = self._commands.link = Link(self.options, "lease")
        loop = asyncio.get_running_loop()
        await link.ensure(loop.time() + self.ttl / 2)
        return int(await self._commands.script_once(script, keys, args))

    async def acquire(self) -> bool:
        return await self._run(ACQUIRE, (self.key,), self.holder, self._ttl_ms) == 1

    async def renew(self) -> bool:
        return await self._run(RENEW, (self.key,), self.holder, self._ttl_ms) == 1

    async def release(self) -> None:
        await self._run(RELEASE, (self.key,), self.holder)

    async def claim(self, tick: int) -> bool:
        retention = round(TICK_RETENTION * 1000)
        keys = (self.key, self.tick_key)
        return await self._run(CLAIM, keys, self.holder, str(tick), retention) == 1

    async def close(self) -> None:
        link, self._commands.link = self._commands.link, None
        if link is not None:
            await link.close()


def open_lease(transport: Any, name: str, holder: str, ttl: float) -> Lease:
    return RedisLease(transport.options, name, holder, ttl)
