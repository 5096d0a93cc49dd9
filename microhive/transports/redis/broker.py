"""Durable queues on Redis Streams with consumer groups.

- A queue is the stream ``<prefix>queue:<name>``; a message is an entry with one field,
  ``data`` (the encoded envelope), added with XADD.
- Every consumer of a queue is in one consumer group (``group`` URL option, default
  ``microhive``), so all of them compete, as on every transport; a deployment that wants a
  second, independent reader of the same stream gives it another group, which then gets
  every message (a group created later starts at the oldest entry still in the stream).
- Consumers read with XREADGROUP (COUNT = free prefetch slots, BLOCK), acknowledge with
  XACK after the handler (acks of one event-loop iteration go out as one XACK), and reclaim
  entries that a dead consumer left pending with XAUTOCLAIM after ``claim_idle``. Live
  consumers touch the entries they hold (XCLAIM to themselves) so that long handlers keep
  them.
- Delayed sends wait in the sorted set ``<queue>:delayed``, delayed retries in
  ``<queue>:retry:<group>`` (score: due time, Unix ms); a Lua script moves what is due into
  the stream atomically. A retry entry carries a ``group`` field: other groups skip it.
- Dead letters go to the stream ``<queue>:dead`` with reason, attempt and time.

See docs/transports/redis.md for the whole mapping and the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ...broker import Consumer, DeadLetter, Delivery, QueueBroker
from ...capabilities import Capabilities
from ...envelope import Envelope, new_id
from ...errors import ConsumerClosed, DecodeError, TransportError
from ..handover import Handover
from .link import RECONNECT, Link, LinkError, ReplyError, SharedLink, pack
from .options import RedisOptions, parse
from .options import consumer_name as instance_name
from .scripts import DEAD_LETTER, LENGTH, MOVE, REQUEUE, SCHEDULE, TRIM, Script

log = logging.getLogger("microhive.redis")

T = TypeVar("T")

_DATA = b"data"
_GROUP = b"group"
_RELEASED_IDLE = 1 << 40
"""XCLAIM ... IDLE for released entries: idle enough for any consumer's next XAUTOCLAIM."""
MOVE_BATCH = 500


@dataclass(frozen=True, slots=True)
class QueueKeys:
    stream: str
    delayed: str
    dead: str
    retry_prefix: str

    @classmethod
    def of(cls, options: RedisOptions, queue: str) -> QueueKeys:
        return cls(
            options.stream(queue),
            options.delayed(queue),
            options.dead(queue),
            options.retries(queue, ""),
        )


class RedisDelivery(Delivery):
    __slots__ = ("consumer", "entry_id", "touched")

    def __init__(
        self,
        consumer: RedisConsumer,
        entry_id: bytes,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
        touched: float,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.consumer = consumer
        self.entry_id = entry_id
        self.touched = touched

    @property
    def message_id(self) -> str:
        """The stream entry id (``<ms>-<seq>``)."""
        return self.entry_id.decode()

    async def ack(self) -> None:
        """XACK, batched with the other acks of this event-loop iteration. Like an AMQP
        ack, it does not wait for the server's answer: a failed XACK is retried in the
        background, and an entry whose XACK never lands is delivered again."""
        if self._settle():
            consumer = self.consumer
            consumer._settled(self)
            consumer.broker._ack(consumer.keys.stream, consumer.group, self.entry_id)

    async def retry(self, delay: float, reason: str) -> None:
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        consumer = self.consumer
        consumer._settled(self)
        broker = consumer.broker
        data = broker.codec.encode(self.envelope.next_attempt(**{"x-last-error": reason}))
        keys = consumer.keys
        if delay > 0:
            await broker._settle(
                self,
                "retry",
                broker._script_once,
                SCHEDULE,
                (consumer.retries, keys.stream),
                (_ms(delay), data, consumer.group, self.entry_id),
            )
            broker._wake(consumer.queue, delay)
        else:
            await broker._settle(
                self,
                "retry",
                broker._script_once,
                REQUEUE,
                (keys.stream,),
                (data, consumer.group, self.entry_id, broker.options.maxlen),
            )

    async def dead_letter(self, reason: str) -> None:
        if not self._settle():
            return
        consumer = self.consumer
        consumer._settled(self)
        broker = consumer.broker
        envelope = self.envelope
        fields: list[Any] = [
            b"data",
            self.raw,
            b"reason",
            reason,
            b"attempt",
            envelope.attempt if envelope is not None else 1,
            b"dead_at",
            repr(time.time()),
            b"queue",
            consumer.queue,
            b"group",
            consumer.group,
            b"entry",
            self.entry_id,
        ]
        if envelope is not None:
            fields += [b"id", envelope.id]
        await broker._settle(
            self,
            "dead-letter",
            broker._script_once,
            DEAD_LETTER,
            (consumer.keys.stream, consumer.keys.dead),
            (consumer.group, self.entry_id, broker.options.dead_maxlen, *fields),
        )

    async def release(self) -> None:
        if self._settle():
            consumer = self.consumer
            consumer._settled(self)
            await consumer.broker._settle(self, "release", consumer._release_now, [self.entry_id])


class RedisConsumer(Consumer):
    """Reads one queue for one consumer of a group, on a connection of its own (BLOCK)."""

    def __init__(
        self, broker: RedisBroker, queue: str, group: str, name: str, prefetch: int
    ) -> None:
        self.broker = broker
        self.options = broker.options
        self.queue = queue
        self.group = group
        self.name = name
        self.prefetch = prefetch
        self.keys = broker._keys(queue)
        self.retries = self.options.retries(queue, group)
        self.closed = False
        self.link = Link(
            self.options,
            f"consumer {name} of {queue!r}",
            timeout=self.options.command_timeout + self.options.block,
        )
        self.held: dict[bytes, RedisDelivery] = {}  # read and not yet settled
        self.handover: Handover[RedisDelivery] = Handover()  # held, not yet taken by a worker
        self._group_bytes = group.encode()
        self._room = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fetcher: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._cursor = b"0-0"
        self._reserved = 0  # slots promised to the read in flight
        self._claiming = 0  # slots promised to the claim in flight
        self._read_args: tuple[Any, ...] = (
            b"XREADGROUP",
            b"GROUP",
            group,
            name,
            b"COUNT",
        )
        self._read_tail: tuple[Any, ...] = (
            b"BLOCK",
            max(1, int(self.options.block * 1000)),
            b"STREAMS",
            self.keys.stream,
            b">",
        )

    def __repr__(self) -> str:
        return f"<RedisConsumer {self.name} of {self.queue!r} on {self.options.safe_url}>"

    async def start(self) -> None:
        await self.link.ensure(self._loop.time() + self.options.retry_timeout)
        self._fetcher = self._loop.create_task(self._fetch(), name=f"microhive.redis.{self.name}")
        self._keeper = self._loop.create_task(self._keep(), name=f"microhive.redis.{self.name}.k")

    # -- handing out -------------------------------------------------------------------

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.queue)
        return await self.handover.take()

    def _accept(self, entries: list[Any]) -> list[RedisDelivery]:
        """Turn stream entries into deliveries held by this consumer (not yet handed out)."""
        codec = self.broker.codec
        now = self._loop.time()
        foreign: list[bytes] = []
        fresh: list[RedisDelivery] = []
        held = self.held
        for entry in entries:
            entry_id, fields = entry[0], entry[1]
            if entry_id in held or fields is None:
                continue
            if len(fields) == 2 and fields[0] == _DATA:
                raw = fields[1]
            else:
                found = dict(zip(fields[::2], fields[1::2], strict=False))
                target = found.get(_GROUP)
                if target is not None and target != self._group_bytes:
                    foreign.append(entry_id)  # another group's retry
                    continue
                raw = found.get(_DATA)
            error = None
            envelope: Envelope | None
            if raw is None:
                raw, envelope = b"", None
                error = f"stream entry without a 'data' field (fields: {fields[::2]!r})"
            else:
                try:
                    envelope = codec.decode(raw)
                except DecodeError as exc:
                    envelope, error = None, str(exc)
            delivery = RedisDelivery(self, entry_id, raw, envelope, error, now)
            held[entry_id] = delivery
            fresh.append(delivery)
        if foreign:
            for entry_id in foreign:
                self.broker._ack(self.keys.stream, self.group, entry_id)
        return fresh

    def _settled(self, delivery: RedisDelivery) -> None:
        if self.held.pop(delivery.entry_id, None) is not None and not self._room.is_set():
            self._room.set()

    def _release_now(self, entry_ids: list[bytes]) -> Awaitable[Any]:
        """Make entries claimable at once by any consumer of the group (first in line)."""
        return self.broker._require().send(
            b"XCLAIM",
            self.keys.stream,
            self.group,
            self.name,
            0,
            *entry_ids,
            b"IDLE",
            _RELEASED_IDLE,
            b"JUSTID",
        )

    # -- reading -----------------------------------------------------------------------

    async def _fetch(self) -> None:
        """Read new entries while there is room; survive any outage."""
        failures = 0
        link = self.link
        prefetch = self.prefetch
        half = max(1, prefetch // 2)
        while not self.closed:
            free = prefetch - len(self.held) - self._reserved - self._claiming
            if free <= 0 or (self.handover and free < half):
                self._room.clear()
                await self._room.wait()
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
                if not isinstance(exc, LinkError):
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
                    self.handover.give_all(self._accept(reply[0][1]))
                except Exception:
                    log.exception("%r: unexpected XREADGROUP reply", self)

    async def _recreate_group(self) -> None:
        try:
            await self.broker._create_group(self.keys.stream, self.group)
        except TransportError as exc:
            log.error("%r: cannot create consumer group: %s", self, exc)
            await asyncio.sleep(1)

    # -- keeping entries: reclaim from the dead, touch our own -------------------------

    async def _keep(self) -> None:
        loop = self._loop
        claim_every = self.options.claim_every
        touch_every = self.options.claim_idle / 4
        next_claim = loop.time()
        next_touch = loop.time() + touch_every
        while True:
            now = loop.time()
            if not self.closed and now >= next_claim:
                next_claim = now + claim_every
                await self._guard("XAUTOCLAIM", self._claim())
            if now >= next_touch:
                next_touch = now + touch_every
                await self._guard("XCLAIM (touch)", self._touch())
            if self.closed and not self.held:
                return
            wake = next_touch if self.closed else min(next_claim, next_touch)
            await asyncio.sleep(max(0.0, wake - loop.time()))

    async def _guard(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except TransportError as exc:
            if self.broker._link is not None and self.broker._link.up:
                log.error("%r: %s failed: %s", self, what, exc)
        except Exception:  # never end the loop
            log.exception("%r: %s failed", self, what)

    async def _claim(self) -> None:
        """Take over entries idle for ``claim_idle``: left by a dead consumer, or released."""
        link = self.broker._link
        # not counting the slots of a blocking read in flight, which mostly returns nothing:
        # a claim may add to it (held then exceeds prefetch for a moment)
        free = self.prefetch - len(self.held) - self._claiming
        if free <= 0 or link is None or not link.up:
            return
        self._claiming += free
        try:
            reply = await link.send(
                b"XAUTOCLAIM",
                self.keys.stream,
                self.group,
                self.name,
                int(self.options.claim_idle * 1000),
                self._cursor,
                b"COUNT",
                free,
            )
        finally:
            self._claiming -= free
            self._room.set()  # the reader may go on
        self._cursor = reply[0]
        entries = [entry for entry in reply[1] if entry is not None]
        if entries and not self.closed:
            log.info("%r: reclaimed %d idle message(s)", self, len(entries))
            reclaimed = self._accept(entries)
            if self.options.max_deliver:
                reclaimed = await self._without_crash_loops(reclaimed)
            self.handover.give_all(reclaimed, front=True)
        elif entries:  # closed meanwhile: give them back
            await self._release_now([entry[0] for entry in entries])

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
                self,
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
        reply = await self.broker._require().send(
            b"XPENDING",
            self.keys.stream,
            self.group,
            min(entry_ids, key=_entry_order),
            max(entry_ids, key=_entry_order),
            len(self.held) + len(entry_ids),
            self.name,
        )
        return {row[0]: int(row[3]) for row in reply}

    async def _touch(self) -> None:
        """Reset the idle time of entries held for a while, so nobody reclaims them."""
        link = self.broker._link
        if link is None or not link.up or not self.held:
            return
        now = self._loop.time()
        quarter = self.options.claim_idle / 4
        stale = [d for d in self.held.values() if now - d.touched >= quarter]
        if not stale:
            return
        for delivery in stale:
            delivery.touched = now
        await link.send(
            b"XCLAIM",
            self.keys.stream,
            self.group,
            self.name,
            int(quarter * 500),
            *(d.entry_id for d in stale),
            b"JUSTID",
        )

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading; give back what was read but not handed out. Handed-out deliveries
        stay valid (and kept from reclaiming) until they are settled."""
        if self.closed:
            return
        self.closed = True
        self.broker._forget(self)
        self.handover.fail(ConsumerClosed(self.queue))
        self._room.set()
        await self._stop_reading()
        unstarted = [d for d in self.handover.clear() if not d.settled]
        if unstarted:
            for delivery in unstarted:
                delivery.settled = True
                self.held.pop(delivery.entry_id, None)
            try:
                await self.broker._retrying(self._release_now, [d.entry_id for d in unstarted])
            except TransportError as exc:
                log.warning(
                    "%r: could not give back %d message(s) (%s); they are reclaimed after "
                    "claim_idle",
                    self,
                    len(unstarted),
                    exc,
                )

    async def _stop_reading(self) -> None:
        fetcher = self._fetcher
        if fetcher is None:
            return
        broker_link = self.broker._link
        deadline = self._loop.time() + self.options.block + 1
        while not fetcher.done() and self._loop.time() < deadline:
            client_id = self.link.client_id
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
        self._room.set()
        for task in (self._fetcher, self._keeper):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._fetcher, self._keeper) if t is not None), return_exceptions=True
        )
        await self.link.close()


class Mover:
    """Moves due delayed messages and retries of one group into the stream; trims it."""

    def __init__(self, broker: RedisBroker, queue: str, group: str) -> None:
        self.broker = broker
        self.queue = queue
        self.group = group
        self.users = 0
        self.keys = broker._keys(queue)
        self.retries = broker.options.retries(queue, group)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"microhive.redis.mover.{self.queue}.{self.group}"
        )

    def wake_in(self, delay: float) -> None:
        """Run at least once more in ``delay`` seconds (something local falls due then).

        One timer is enough, for the earliest: each run learns from Redis when the next
        message is due."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay + 0.001
        timer = self._timer
        if timer is not None and loop.time() <= timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timer = loop.call_at(when, self.wake.set)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        broker = self.broker
        options = broker.options
        loop = asyncio.get_running_loop()
        next_trim = loop.time() + options.trim_interval
        failures = 0
        while True:
            self.wake.clear()
            wait = options.delay_poll
            try:
                moved, due_in = await broker._script(
                    MOVE,
                    (self.keys.stream, self.keys.delayed, self.retries),
                    (MOVE_BATCH, self.group, options.maxlen),
                )
                failures = 0
                if moved >= MOVE_BATCH:
                    wait = 0
                elif due_in >= 0:
                    wait = min(wait, due_in / 1000)
                if options.trim_interval > 0 and loop.time() >= next_trim:
                    next_trim = loop.time() + options.trim_interval
                    await broker._script(TRIM, (self.keys.stream,), ())
            except TransportError as exc:
                failures += 1
                if failures == 1:
                    log.warning("mover of %r: %s", self.queue, exc)
                wait = RECONNECT.delay(failures)
            except Exception:  # never end the loop
                failures += 1
                log.exception("mover of %r failed", self.queue)
                wait = RECONNECT.delay(failures)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.wake.wait()


class RedisBroker(QueueBroker):
    """``redis://[user:password@]host[:port][/db][?prefix=...&claim_idle=...]``;
    ``rediss://`` for TLS. The options are described in docs/transports/redis.md."""

    capabilities = Capabilities(
        out_of_process=True, durable=True, delayed_delivery=True, dead_letter=True, replay=True
    )

    def __init__(self, url: str = "redis://", **options: Any) -> None:
        super().__init__(url, **options)
        self.options: RedisOptions = parse(url)
        self._link: Link | None = None
        self._consumers: set[RedisConsumer] = set()
        self._movers: dict[tuple[str, str], Mover] = {}
        self._groups: set[tuple[str, str]] = set()
        self._names: set[tuple[str, str]] = set()
        self._key_cache: dict[str, QueueKeys] = {}
        self._acks: dict[tuple[str, str], _AckBatch] = {}
        self._acking: set[asyncio.Future[Any]] = set()  # XACKs sent, not yet answered
        self._background: set[asyncio.Task[None]] = set()  # XACKs retried after a failure

    def _keys(self, queue: str) -> QueueKeys:
        keys = self._key_cache.get(queue)
        if keys is None:
            keys = self._key_cache[queue] = QueueKeys.of(self.options, queue)
        return keys

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        self._link = await SharedLink.acquire(self.options)

    async def _close(self) -> None:
        consumers = list(self._consumers)
        self._consumers.clear()
        for consumer in consumers:
            await consumer.abort()
        for mover in self._movers.values():
            await mover.stop()
        self._movers.clear()
        self._names.clear()
        waiting: set[Any] = {*self._acking, *self._background}
        if waiting:  # acknowledgements on their way: let them land
            await asyncio.wait(waiting, timeout=self.options.command_timeout)
        link, self._link = self._link, None
        if link is not None:
            await link.settle(self.options.command_timeout)
            await SharedLink.release(link)

    # -- commands through outages ------------------------------------------------------

    def _require(self) -> Link:
        link = self._link
        if link is None:
            raise TransportError(f"{self!r} is not connected")
        return link

    async def _command(self, *args: Any) -> Any:
        """One command; through an outage it is retried until ``retry_timeout``.

        A command whose reply was lost may have run: an XADD retried then is stored twice
        (at least once).
        """
        link = self._require()
        if link.up:
            try:
                return await link.send(*args)
            except LinkError:
                pass
        return await self._retrying(lambda: link.send(*args))

    async def _retrying(self, attempt: Callable[..., Awaitable[T]], *args: Any) -> T:
        link = self._require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                await link.ensure(deadline)
                return await attempt(*args)
            except LinkError:
                failures += 1
                if link.closed or loop.time() >= deadline:
                    raise
                await asyncio.sleep(min(RECONNECT.delay(failures), deadline - loop.time()))

    async def _script(self, script: Script, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        """Run ``script`` (EVALSHA, EVAL when the server lost it), retried through outages."""
        try:
            return await self._command(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await self._command(b"EVAL", script.source, len(keys), *keys, *args)

    async def _script_once(
        self, script: Script, keys: tuple[Any, ...], args: tuple[Any, ...]
    ) -> Any:
        """Run ``script`` once; :class:`LinkError` when the connection is down."""
        link = self._require()
        try:
            return await link.send(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await link.send(b"EVAL", script.source, len(keys), *keys, *args)

    async def _settle(
        self, delivery: RedisDelivery, what: str, step: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        """Settle through an outage; if it cannot, the entry stays pending and is delivered
        again after ``claim_idle`` (never lost, never raised into the worker)."""
        try:
            try:
                await step(*args)
            except LinkError:
                await self._retrying(step, *args)
        except TransportError as exc:
            log.error(
                "%s of message %s on %r failed: %s; it will be delivered again",
                what,
                delivery.message_id,
                delivery.consumer.queue,
                exc,
            )

    # -- acknowledgements, batched per event-loop iteration ----------------------------

    def _ack(self, stream: str, group: str, entry_id: bytes) -> None:
        """XACK ``entry_id``; the acks of one event-loop iteration go out as one XACK,
        which keeps the place in line of the first (a later query on this process's
        connection sees them)."""
        key = (stream, group)
        batch = self._acks.get(key)
        if batch is None:
            link = self._link
            if link is None:  # closed under a handler: the entry stays pending
                log.warning(
                    "%r is closed: message %s of %s not acknowledged; it will be delivered again",
                    self,
                    entry_id.decode(),
                    stream,
                )
                return
            batch = self._acks[key] = _AckBatch(self, key)
            try:
                sent = link.send_lazy(batch.pack)
            except LinkError:  # down: retried until it is back
                del self._acks[key]
                batch.ids.append(entry_id)
                self._unacked(batch)
                return
            self._acking.add(sent)
            sent.add_done_callback(batch.resolve)
        batch.ids.append(entry_id)

    def _unacked(self, batch: _AckBatch) -> None:
        """An XACK failed: retry it in the background until ``retry_timeout``."""
        stream, group = batch.key

        async def again() -> None:
            try:
                await self._retrying(
                    lambda: self._require().send(b"XACK", stream, group, *batch.ids)
                )
            except TransportError as exc:
                log.error(
                    "acknowledging %d message(s) of %s failed: %s; they will be delivered again",
                    len(batch.ids),
                    stream,
                    exc,
                )

        task = asyncio.get_running_loop().create_task(again())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the transport primitives ------------------------------------------------------

    def _xadd(self, stream: str, data: bytes) -> tuple[Any, ...]:
        maxlen = self.options.maxlen
        if maxlen:
            return (b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*", _DATA, data)
        return (b"XADD", stream, b"*", _DATA, data)

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        keys = self._keys(queue)
        if delay > 0:
            await self._script(SCHEDULE, (keys.delayed,), (_ms(delay), data))
            self._wake(queue, delay)
        else:
            await self._command(*self._xadd(keys.stream, data))

    async def publish_raw(self, queue: str, data: bytes) -> str:
        """Add bytes as they are, as a foreign producer would; returns the entry id."""
        await self.connect()
        entry_id = await self._command(*self._xadd(self._keys(queue).stream, data))
        return str(entry_id.decode())

    def _wake(self, queue: str, delay: float) -> None:
        for (name, _), mover in self._movers.items():
            if name == queue:
                mover.wake_in(delay)

    async def _length(self, queue: str) -> int:
        keys = self._keys(queue)
        result = await self._script(LENGTH, (keys.stream, keys.delayed), (keys.retry_prefix,))
        return int(result)

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        dead = self._keys(queue).dead
        entries = await self._command(b"XRANGE", dead, b"-", b"+", b"COUNT", limit)
        letters = []
        for _, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=False))
            raw = fields.get(b"data", b"")
            try:
                envelope: Envelope | None = self.codec.decode(raw)
            except DecodeError:
                envelope = None
            letters.append(
                DeadLetter(
                    queue=queue,
                    reason=fields.get(b"reason", b"").decode(errors="replace"),
                    raw=raw,
                    envelope=envelope,
                    attempt=_int(fields.get(b"attempt"), 1),
                    dead_at=_float(fields.get(b"dead_at"), 0.0),
                )
            )
        return letters

    async def _create_group(self, stream: str, group: str) -> None:
        try:
            await self._command(b"XGROUP", b"CREATE", stream, group, b"0", b"MKSTREAM")
        except ReplyError as exc:
            if exc.code != "BUSYGROUP":
                raise
        self._groups.add((stream, group))

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        group = self.options.group
        consumer_name = instance_name(name, f"consumer.{new_id()[:8]}")
        keys = self._keys(queue)
        while (keys.stream, consumer_name) in self._names:  # one name per reader of a stream
            consumer_name = f"{consumer_name}+"
        if (keys.stream, group) not in self._groups:
            await self._create_group(keys.stream, group)
        consumer = RedisConsumer(self, queue, group, consumer_name, prefetch)
        await consumer.start()
        self._names.add((keys.stream, consumer_name))
        self._consumers.add(consumer)
        mover = self._movers.get((queue, group))
        if mover is None:
            mover = self._movers[(queue, group)] = Mover(self, queue, group)
            mover.start()
        mover.users += 1
        return consumer

    async def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """XREVRANGE for the last entries, then XREAD BLOCK from there: no group, no acks.

        Entries re-added for a retry (they carry a ``group`` field) are not new messages and
        are skipped. The reader has a connection of its own and rides out outages.
        """
        stream = self._keys(queue).stream
        options = self.options
        loop = asyncio.get_running_loop()
        link = Link(options, f"tail of {queue!r}", timeout=options.command_timeout + options.block)
        block = max(1, int(options.block * 1000))
        try:
            await link.ensure(loop.time() + options.retry_timeout)
            newest = await link.send(b"XREVRANGE", stream, b"+", b"-", b"COUNT", max(last, 1))
            cursor = newest[0][0] if newest else b"0-0"
            for _, fields in reversed(newest[:last] if last else []):
                if (data := _new_message(fields)) is not None:
                    yield data
            failures = 0
            while True:
                try:
                    await link.ensure()
                    reply = await link.send(
                        b"XREAD", b"COUNT", 500, b"BLOCK", block, b"STREAMS", stream, cursor
                    )
                except TransportError as exc:
                    failures += 1
                    log.warning("tail of %r: %s; reading again", queue, exc)
                    await asyncio.sleep(RECONNECT.delay(failures))
                    continue
                failures = 0
                for entry_id, fields in reply[0][1] if reply else ():
                    cursor = entry_id
                    if (data := _new_message(fields)) is not None:
                        yield data
        finally:
            await link.close()

    def _forget(self, consumer: RedisConsumer) -> None:
        self._consumers.discard(consumer)
        self._names.discard((consumer.keys.stream, consumer.name))
        mover = self._movers.get((consumer.queue, consumer.group))
        if mover is not None:
            mover.users -= 1
            if mover.users <= 0:
                del self._movers[(consumer.queue, consumer.group)]
                asyncio.get_running_loop().create_task(mover.stop())


class _AckBatch:
    """Entry ids acknowledged in one XACK."""

    __slots__ = ("broker", "ids", "key")

    def __init__(self, broker: RedisBroker, key: tuple[str, str]) -> None:
        self.broker = broker
        self.key = key
        self.ids: list[bytes] = []

    def pack(self) -> bytes:
        """Called as the command is written: later acks start a new batch."""
        batches = self.broker._acks
        if batches.get(self.key) is self:
            del batches[self.key]
        stream, group = self.key
        return pack((b"XACK", stream, group, *self.ids))

    def resolve(self, sent: asyncio.Future[Any]) -> None:
        broker = self.broker
        broker._acking.discard(sent)
        if broker._acks.get(self.key) is self:  # the connection broke before the write
            del broker._acks[self.key]
        if sent.cancelled() or sent.exception() is not None:
            if broker._link is not None:
                broker._unacked(self)
            else:
                log.error(
                    "acknowledging %d message(s) of %s failed: broker closed; they will be "
                    "delivered again",
                    len(self.ids),
                    self.key[0],
                )


def _new_message(fields: list[bytes] | None) -> bytes | None:
    """The ``data`` of an entry a producer added; None for retries and foreign entries."""
    if not fields:
        return None
    if len(fields) == 2 and fields[0] == _DATA:
        return fields[1]
    found = dict(zip(fields[::2], fields[1::2], strict=False))
    return None if _GROUP in found else found.get(_DATA)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _int(value: bytes | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _float(value: bytes | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition(b"-")
    return int(milliseconds), int(sequence or 0)
