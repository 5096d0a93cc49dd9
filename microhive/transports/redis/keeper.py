"""Keeping entries: a consumer reclaims what dead consumers left pending, and touches
what it holds so that nobody reclaims it from under a long handler.

- Every ``claim_interval`` (at most ``claim_idle/2``): XAUTOCLAIM of entries idle for
  ``claim_idle`` — left by a dead consumer, or released. Reclaimed entries go first in line;
  those delivered more than ``max_deliver`` times are dead-lettered instead (a crash loop).
- Every ``claim_idle/4``: XCLAIM ... JUSTID of the held entries to themselves, which resets
  their idle time. A closed consumer keeps touching until what it handed out is settled.
- Every ``claim_interval``: the consumer says it is alive in the group's presence set (ZADD
  name -> now; ZREM at close), which ``stats()`` counts. Redis itself cannot tell: it keeps
  a group's consumer names forever, and 7.0 does not refresh or even create one for a read
  that waits and gets nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ...errors import TransportError
from .wire import entry_order

if TYPE_CHECKING:
    from .consumer import RedisConsumer, RedisDelivery

log = logging.getLogger("microhive.redis")


class Keeper:
    def __init__(self, consumer: RedisConsumer) -> None:
        self.consumer = consumer
        self.options = consumer.options
        self.commands = consumer.commands
        self.task: asyncio.Task[None] | None = None
        self._cursor = b"0-0"
        self._left = False
        self._presence = self.options.consumers(consumer.queue, consumer.group)
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Look again now: the consumer closed, or settled the last of what it held (then
        the loop ends at once instead of at its next touch, which may come after the
        event loop itself has ended)."""
        self._woken.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._keep(), name=f"microhive.redis.{self.consumer.name}.k"
        )

    async def _keep(self) -> None:
        consumer = self.consumer
        loop = asyncio.get_running_loop()
        claim_every = self.options.claim_every
        touch_every = self.options.claim_idle / 4
        next_claim = loop.time()
        next_touch = loop.time() + touch_every
        while True:
            now = loop.time()
            if not consumer.closed and now >= next_claim:
                next_claim = now + claim_every
                await self._guard("ZADD (presence)", self._present(True))
                await self._guard("XAUTOCLAIM", self._claim())
            if now >= next_touch:
                next_touch = now + touch_every
                await self._guard("XCLAIM (touch)", self._touch())
            if consumer.closed:
                await self.leave()
            if consumer.closed and (not consumer.held or self.commands.link is None):
                return  # all settled, or the broker closed: nothing to keep them with
            wake = next_touch if consumer.closed else min(next_claim, next_touch)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - loop.time())):
                    await self._woken.wait()
            self._woken.clear()

    async def _guard(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except TransportError as exc:
            if self.commands.up:
                log.error("%r: %s failed: %s", self.consumer, what, exc)
        except Exception:  # never end the loop
            log.exception("%r: %s failed", self.consumer, what)

    async def leave(self) -> None:
        """Leave the presence set at once (close() calls it: the loop may not run again)."""
        if not self._left:
            self._left = True
            await self._guard("ZREM (presence)", self._present(False))

    async def _present(self, alive: bool) -> None:
        link = self.commands.link
        if link is None or not link.up:
            return
        name = self.consumer.name
        if alive:
            await link.send(b"ZADD", self._presence, repr(time.time()), name)
        else:
            await link.send(b"ZREM", self._presence, name)

    async def _claim(self) -> None:
        """Take over entries idle for ``claim_idle``: left by a dead consumer, or released."""
        consumer = self.consumer
        link = self.commands.link
        # not counting the slots of a blocking read in flight, which mostly returns nothing:
        # a claim may add to it (held then exceeds prefetch for a moment)
        free = consumer.prefetch - len(consumer.held) - consumer.claiming
        if free <= 0 or link is None or not link.up:
            return
        consumer.claiming += free
        try:
            reply = await link.send(
                b"XAUTOCLAIM",
                consumer.keys.stream,
                consumer.group,
                consumer.name,
                int(self.options.claim_idle * 1000),
                self._cursor,
                b"COUNT",
                free,
            )
        finally:
            consumer.claiming -= free
            consumer.room.set()  # the reader may go on
        self._cursor = reply[0]
        entries = [entry for entry in reply[1] if entry is not None]
        if entries and not consumer.closed:
            log.info("%r: reclaimed %d idle message(s)", consumer, len(entries))
            reclaimed = consumer.accept(entries)
            if self.options.max_deliver:
                reclaimed = await self._without_crash_loops(reclaimed)
            if consumer.closed:  # during the XPENDING: nobody would take them any more
                await consumer.give_back(reclaimed)
            else:
                consumer.handover.give_all(reclaimed, front=True)
        elif entries:  # closed meanwhile: give them back
            await consumer.settler.release_now([entry[0] for entry in entries])

    async def _without_crash_loops(self, reclaimed: list[RedisDelivery]) -> list[RedisDelivery]:
        """Dead-letter the reclaimed entries delivered more than ``max_deliver`` times without
        being settled: their handler keeps killing (or hanging) its process, and reclaiming
        them forever would take every consumer down in turn. Returns the others."""
        if not reclaimed:
            return reclaimed
        counts = await self._delivery_counts([d.entry_id for d in reclaimed])
        limit = self.options.max_deliver
        keep = []
        for delivery in reclaimed:
            delivered = counts.get(delivery.entry_id, 0)
            if delivered <= limit:
                keep.append(delivery)
                continue
            log.error(
                "%r: entry %s was delivered %d times without being settled (max_deliver=%d); "
                "dead-lettered",
                self.consumer,
                delivery.message_id,
                delivered,
                limit,
            )
            await delivery.dead_letter(
                f"delivered {delivered} times without being settled (max_deliver={limit}): "
                "its handler crashed or hung the consumer each time"
            )
        return keep

    async def _delivery_counts(self, entry_ids: list[bytes]) -> dict[bytes, int]:
        """How often each of this consumer's pending entries was delivered (XPENDING)."""
        consumer = self.consumer
        reply = await self.commands.require().send(
            b"XPENDING",
            consumer.keys.stream,
            consumer.group,
            min(entry_ids, key=entry_order),
            max(entry_ids, key=entry_order),
            len(consumer.held) + len(entry_ids),
            consumer.name,
        )
        return {row[0]: int(row[3]) for row in reply}

    async def _touch(self) -> None:
        """Reset the idle time of entries held for a while, so nobody reclaims them."""
        consumer = self.consumer
        link = self.commands.link
        if link is None or not link.up or not consumer.held:
            return
        now = asyncio.get_running_loop().time()
        quarter = self.options.claim_idle / 4
        stale = [d for d in consumer.held.values() if now - d.touched >= quarter]
        if not stale:
            return
        for delivery in stale:
            delivery.touched = now
        await link.send(
            b"XCLAIM",
            consumer.keys.stream,
            consumer.group,
            consumer.name,
            int(quarter * 500),
            *(d.entry_id for d in stale),
            b"JUSTID",
        )
