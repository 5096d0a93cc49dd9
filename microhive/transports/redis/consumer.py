"""A consumer of one queue: one reader in the broker's consumer group, and its deliveries.

- It reads with XREADGROUP (COUNT = free prefetch slots, BLOCK) on a connection of its own,
  so it never holds more than ``prefetch`` unsettled entries (a claim round may add to a
  blocking read in flight for a moment).
- A delivery settles through the consumer's :class:`.settler.Settler`: acks are batched
  XACKs, retries and dead letters Lua scripts, releases an XCLAIM that makes the entry
  claimable at once.
- Its :class:`.keeper.Keeper` reclaims entries a dead consumer left pending and touches the
  ones this consumer holds, so long handlers keep them.
- ``close()`` stops reading and gives back what was read but not handed out; deliveries
  handed out stay valid until they are settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ...broker import Consumer, Delivery
from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope
from ...errors import ConsumerClosed, DecodeError, TransportError
from ...stopping import cancel_and_wait
from ..handover import Handover
from ..links import RECONNECT, LinkDown
from .commands import Commands
from .entries import ENVELOPE, decode
from .keeper import Keeper
from .link import Link, ReplyError
from .settler import Settler
from .wire import DATA, GROUP, QueueKeys

log = logging.getLogger("microhive.redis")


class RedisDelivery(Delivery):
    __slots__ = ("entry_id", "fields", "settler", "touched")

    def __init__(
        self,
        settler: Settler,
        entry_id: bytes,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
        touched: float,
        fields: list[bytes] | None = None,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.settler = settler
        self.entry_id = entry_id
        self.fields = fields  # the entry's fields, unless it was microhive's plain ``data``
        self.touched = touched  # loop time this consumer last reset its idle time

    @property
    def message_id(self) -> str:
        """The stream entry id (``<ms>-<seq>``)."""
        return self.entry_id.decode()

    async def ack(self) -> None:
        """XACK, batched with the other acks of this event-loop iteration. Like an AMQP
        ack, it does not wait for the server's answer: a failed XACK is retried in the
        background, and an entry whose XACK never lands is delivered again."""
        if self._settle():
            self.settler.ack(self)

    def ack_now(self) -> bool:
        if self._settle():
            self.settler.ack(self)
        return True

    async def retry(self, delay: float, reason: str) -> None:
        if self._settle():
            await self.settler.retry(self, delay, reason)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            await self.settler.dead_letter(self, reason)

    async def release(self) -> None:
        if self._settle():
            await self.settler.release(self)


class RedisConsumer(Consumer):
    """Reads one queue for one consumer of a group, on a connection of its own (BLOCK)."""

    def __init__(
        self,
        *,
        commands: Commands,
        codec: Codec,
        queue: str,
        declaration: Queue,
        keys: QueueKeys,
        group: str,
        name: str,
        prefetch: int,
        make_settler: Callable[[RedisConsumer], Settler],
        declare: Callable[[str, str], Awaitable[None]],
        forget: Callable[[RedisConsumer], None],
    ) -> None:
        self.commands = commands
        self.options = options = commands.options
        self.codec = codec
        self.queue = queue
        self.declaration = declaration  # payload kind, for entries of plain producers
        self.keys = keys
        self.group = group
        self.name = name
        self.prefetch = prefetch
        self.closed = False
        role = f"consumer {name} of {queue!r}"
        self.link = Link(options, role, timeout=options.command_timeout + options.block)
        self.held: dict[bytes, RedisDelivery] = {}  # read and not yet settled
        self.handover: Handover[RedisDelivery] = Handover()  # held, not yet taken by a worker
        self.room = asyncio.Event()  # a slot came free
        self.claiming = 0  # slots promised to the claim in flight
        self.settler = make_settler(self)
        self.keeper = Keeper(self)
        self._declare = declare  # create the stream and group again (NOGROUP)
        self._forget = forget  # the broker's bookkeeping, at close()
        self._group_bytes = group.encode()
        self._loop = asyncio.get_running_loop()
        self._fetcher: asyncio.Task[None] | None = None
        self._reserved = 0  # slots promised to the read in flight
        self._read_args: tuple[Any, ...] = (b"XREADGROUP", b"GROUP", group, name, b"COUNT")
        self._read_tail: tuple[Any, ...] = (
            b"BLOCK",
            max(1, int(options.block * 1000)),
            b"STREAMS",
            keys.stream,
            b">",
        )

    def __repr__(self) -> str:
        return f"<RedisConsumer {self.name} of {self.queue!r} on {self.options.safe_url}>"

    async def start(self) -> None:
        await self.link.ensure(self._loop.time() + self.options.retry_timeout)
        self._fetcher = self._loop.create_task(self._fetch(), name=f"microhive.redis.{self.name}")
        self.keeper.start()

    # -- handing out -------------------------------------------------------------------

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.queue)
        return await self.handover.take()

    def ready(self, limit: int) -> list[Delivery]:
        return list(self.handover.take_now(limit))

    def accept(self, entries: list[Any]) -> list[RedisDelivery]:
        """Turn stream entries into deliveries held by this consumer (not yet handed out)."""
        codec = self.codec
        settler = self.settler
        now = self._loop.time()
        fresh: list[RedisDelivery] = []
        held = self.held
        for entry in entries:
            entry_id, fields = entry[0], entry[1]
            if entry_id in held or fields is None:
                continue
            extra: list[bytes] | None = None
            if len(fields) == 2 and fields[0] == DATA and fields[1].startswith(ENVELOPE):
                raw = fields[1]  # microhive's own entry: the fast path
                try:
                    envelope: Envelope | None = codec.decode(raw)
                    error = None
                except DecodeError as exc:
                    envelope, error = None, str(exc)
            else:
                if GROUP in fields[::2]:
                    target = fields[fields[::2].index(GROUP) * 2 + 1]
                    if target != self._group_bytes:
                        settler.ack_foreign(entry_id)  # another group's retry
                        continue
                raw, envelope, error = decode(codec, entry_id, fields, self.declaration)
                extra = fields
            delivery = RedisDelivery(settler, entry_id, raw, envelope, error, now, extra)
            held[entry_id] = delivery
            fresh.append(delivery)
        return fresh

    def settled(self, delivery: RedisDelivery) -> None:
        """A delivery was settled (or is being): its slot is free."""
        if self.held.pop(delivery.entry_id, None) is not None and not self.room.is_set():
            self.room.set()
        if self.closed and not self.held:
            self.keeper.wake()

    # -- reading -----------------------------------------------------------------------

    async def _fetch(self) -> None:
        """Read new entries while there is room; survive any outage."""
        failures = 0
        link = self.link
        prefetch = self.prefetch
        half = max(1, prefetch // 2)
        while not self.closed:
            free = prefetch - len(self.held) - self._reserved - self.claiming
            if free <= 0 or (self.handover and free < half):
                self.room.clear()
                await self.room.wait()
                continue
            try:
                if not link.up:
                    await link.ensure()
                    if self.closed:
                        break
                self._reserved += free
                try:
                    reply = await link.send(*self._read_args, free, *self._read_tail)
                finally:
                    self._reserved -= free
            except ReplyError as exc:
                failures += 1
                if exc.code == "NOGROUP":  # the stream or the group is gone (server restarted
                    await self._recreate_group()  # without persistence, or deleted)
                else:
                    log.error("%r: XREADGROUP failed: %s", self, exc)
                    await asyncio.sleep(RECONNECT.delay(failures))
                continue
            except TransportError as exc:
                failures += 1
                if not isinstance(exc, LinkDown):
                    log.error("%r: %s", self, exc)
                await asyncio.sleep(RECONNECT.delay(failures))
                continue
            except Exception:  # never end the loop: what was read is reclaimed later
                failures += 1
                log.exception("%r: reading failed", self)
                await asyncio.sleep(RECONNECT.delay(failures))
                continue
            failures = 0
            if reply:
                try:
                    self.handover.give_all(self.accept(reply[0][1]))
                except Exception:
                    log.exception("%r: unexpected XREADGROUP reply", self)

    async def _recreate_group(self) -> None:
        try:
            await self._declare(self.keys.stream, self.group)
        except TransportError as exc:
            log.error("%r: cannot create consumer group: %s", self, exc)
            await asyncio.sleep(1)

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading; give back what was read but not handed out. Handed-out deliveries
        stay valid (and kept from reclaiming) until they are settled."""
        if self.closed:
            return
        self.closed = True
        self._forget(self)
        self.handover.fail(ConsumerClosed(self.queue))
        self.room.set()
        await self._stop_reading()
        await self.keeper.leave()  # no longer counted among the queue's consumers
        await self.give_back(self.handover.clear())
        self.keeper.wake()

    async def give_back(self, deliveries: list[RedisDelivery]) -> None:
        """Release deliveries no worker took (the consumer closed): no longer held, so its
        keeper can end; another consumer reads them at its next claim."""
        unstarted = [d for d in deliveries if not d.settled]
        if not unstarted:
            return
        for delivery in unstarted:
            delivery.settled = True
            self.held.pop(delivery.entry_id, None)
        try:
            await self.commands.retrying(self.settler.release_now, [d.entry_id for d in unstarted])
        except TransportError as exc:
            log.warning(
                "%r: could not give back %d message(s) (%s); they are reclaimed after claim_idle",
                self,
                len(unstarted),
                exc,
            )

    async def _stop_reading(self) -> None:
        fetcher = self._fetcher
        if fetcher is None:
            return
        deadline = self._loop.time() + self.options.block + 1
        while not fetcher.done() and self._loop.time() < deadline:
            client_id = self.link.client_id
            broker_link = self.commands.link
            if client_id and client_id > 0 and broker_link is not None and broker_link.up:
                broker_link.send_nowait(b"CLIENT", b"UNBLOCK", client_id)
            await asyncio.wait([fetcher], timeout=0.05)
        if not fetcher.done():
            fetcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetcher
        await self.link.close()

    async def abort(self) -> None:
        """The broker is closing: stop everything, settle nothing (like a crash would)."""
        self.closed = True
        self.handover.fail(ConsumerClosed(self.queue))
        self.room.set()
        await cancel_and_wait(self._fetcher, self.keeper.task)
        await self.link.close()
