"""Leases inside one process: a table per event loop and hive, times from the loop's clock.

Agents of one ``memory://name`` hive on one event loop share the table, so several agent
instances in one process (a test, a demo) behave as replicas: one holds the lease, the
others take over when it stops renewing. A lease here cannot outlive its process, and
nothing outside the process can see it.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from ...leases import Lease
from .hive import hive_name


@dataclass(slots=True)
class _Entry:
    holder: str | None = None
    expires: float = 0.0
    last_tick: int | None = None


_TABLES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Entry]] = (
    weakref.WeakKeyDictionary()
)


class MemoryLease(Lease):
    def __init__(self, hive: str, name: str, holder: str, ttl: float) -> None:
        super().__init__(name, holder, ttl)
        self._key = (hive, name)

    def _entry(self) -> _Entry:
        table = _TABLES.setdefault(asyncio.get_running_loop(), {})
        return table.setdefault(self._key, _Entry())

    def _held(self, entry: _Entry, now: float) -> bool:
        return entry.holder == self.holder and entry.expires > now

    async def acquire(self) -> bool:
        entry, now = self._entry(), asyncio.get_running_loop().time()
        if entry.holder is None or entry.expires <= now or entry.holder == self.holder:
            entry.holder, entry.expires = self.holder, now + self.ttl
            return True
        return False

    async def renew(self) -> bool:
        entry, now = self._entry(), asyncio.get_running_loop().time()
        if not self._held(entry, now):
            return False
        entry.expires = now + self.ttl
        return True

    async def release(self) -> None:
        entry = self._entry()
        if entry.holder == self.holder:
            entry.holder, entry.expires = None, 0.0

    async def claim(self, tick: int) -> bool:
        entry = self._entry()
        if not self._held(entry, asyncio.get_running_loop().time()):
            return False
        if entry.last_tick is not None and tick <= entry.last_tick:
            return False
        entry.last_tick = tick
        return True


def open_lease(transport: Any, name: str, holder: str, ttl: float) -> Lease:
    return MemoryLease(hive_name(transport.url), name, holder, ttl)
