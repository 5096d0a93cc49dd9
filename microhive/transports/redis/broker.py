"""Durable queues on Redis Streams with consumer groups.

- A queue is the stream ``<prefix>queue:<name>``; a message is an entry with one field,
  ``data`` (the encoded envelope), added with XADD.
- Every consumer of a queue is in one consumer group (``group`` URL option, default
  ``microhive``), so all of them compete, as on every transport; a deployment that wants a
  second, independent reader of the same stream gives it another group, which then gets
  every message (a group created later starts at the oldest entry still in the stream).
- Consumers (:mod:`.consumer`) read with XREADGROUP, settle through a :mod:`.settler`
  (acks of one event-loop iteration go out as one XACK, :mod:`.acks`) and reclaim what dead
  consumers left pending (:mod:`.keeper`).
- Delayed sends and retries wait in sorted sets until the :mod:`.delayer` moves them into
  the stream; dead letters go to the stream ``<queue>:dead`` with reason, attempt and time.
- ``tail()`` reads the stream without a group (:mod:`.tail`).
- Entries of plain producers are adopted (:mod:`.entries`); ``Queue(address=...)`` is that
  stream verbatim; dead letters are listed, requeued and purged by :mod:`.dead`.

See docs/transports/redis.md for the whole mapping and the guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...deadletters import Selection
from ...declarations import Queue
from ...envelope import Envelope, new_id
from ...errors import DecodeError, PayloadError
from ...stats import QueueStats
from . import dead, stats
from .acks import Acks
from .commands import Commands
from .consumer import RedisConsumer
from .delayer import Mover
from .entries import ENVELOPE, decode, marked
from .link import ReplyError, SharedLink
from .options import RedisOptions, parse
from .options import consumer_name as instance_name
from .scripts import LENGTH, SCHEDULE
from .settler import Settler
from .tail import Read, tail
from .wire import DATA, GROUP, QueueKeys, ms, xadd, xadd_fields

log = logging.getLogger("microhive.redis")


class RedisBroker(QueueBroker):
    """``redis://[user:password@]host[:port][/db][?prefix=...&claim_idle=...]``;
    ``rediss://`` for TLS, ``redis+unix://`` and ``redis+sentinel://`` too. The options are
    described in docs/transports/redis.md."""

    capabilities = Capabilities(
        out_of_process=True, durable=True, delayed_delivery=True, dead_letter=True, replay=True
    )

    def __init__(self, url: str = "redis://", **options: Any) -> None:
        super().__init__(url, **options)
        self.options: RedisOptions = parse(url)
        self._commands = Commands(self.options, repr(self))
        self._acks = Acks(self._commands)
        self._consumers: set[RedisConsumer] = set()
        # closed consumers whose keeper still runs for deliveries they handed out: stopped
        # with the broker, like the open ones (weak: a keeper that finished lets go)
        self._lingering: weakref.WeakSet[RedisConsumer] = weakref.WeakSet()
        self._movers: dict[tuple[str, str], Mover] = {}
        self._groups: set[tuple[str, str]] = set()
        self._names: set[tuple[str, str]] = set()
        self._key_cache: dict[str, QueueKeys] = {}

    def _declaration_changed(self, queue: str) -> None:
        self._key_cache.pop(queue, None)  # its address may differ

    def _keys(self, queue: str) -> QueueKeys:
        keys = self._key_cache.get(queue)
        if keys is None:
            address = self.declaration(queue).address
            keys = self._key_cache[queue] = QueueKeys.of(self.options, queue, address)
        return keys

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        self._commands.link = await SharedLink.acquire(self.options)

    async def _close(self) -> None:
        consumers = [*self._consumers, *self._lingering]
        self._consumers.clear()
        self._lingering.clear()
        for consumer in consumers:
            await consumer.abort()
        for mover in self._movers.values():
            await mover.stop()
        self._movers.clear()
        self._names.clear()
        await self._acks.wait(self.options.command_timeout)  # acks on their way: let them land
        link, self._commands.link = self._commands.link, None
        if link is not None:
            await link.settle(self.options.command_timeout)
            await SharedLink.release(link)

    # -- publishing ----------------------------------------------------------------------

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        keys = self._keys(queue)
        if delay > 0:  # the mover adds it as an envelope in ``data``, whatever the queue
            await self._commands.script(SCHEDULE, (keys.delayed,), (ms(delay), data))
            self._wake(queue, delay)
            return
        declaration = self.declaration(queue)
        if declaration.payload == "json":
            await self._commands.run(*xadd(keys.stream, data, self.options.maxlen))
        else:  # the plain body as ``data``, for plain consumers; the envelope beside it
            fields = marked(self.codec, envelope)
            await self._commands.run(*xadd_fields(keys.stream, fields, self.options.maxlen))

    async def publish_raw(self, queue: str, data: bytes) -> str:
        """Add bytes as they are, as a foreign producer would; returns the entry id."""
        await self.connect()
        stream = self._keys(queue).stream
        entry_id = await self._commands.run(*xadd(stream, data, self.options.maxlen))
        return str(entry_id.decode())

    def _wake(self, queue: str, delay: float) -> None:
        """Something sent from here falls due in ``delay`` s: the movers of ``queue`` run then."""
        for (name, _), mover in self._movers.items():
            if name == queue:
                mover.wake_in(delay)

    # -- declaring and consuming ---------------------------------------------------------

    async def _declare(self, stream: str, group: str) -> None:
        """The stream and its consumer group (reading from the oldest entry)."""
        try:
            await self._commands.run(b"XGROUP", b"CREATE", stream, group, b"0", b"MKSTREAM")
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
            await self._declare(keys.stream, group)
        consumer = RedisConsumer(
            commands=self._commands,
            codec=self.codec,
            queue=queue,
            declaration=self.declaration(queue),
            keys=keys,
            group=group,
            name=consumer_name,
            prefetch=prefetch,
            make_settler=self._settler,
            declare=self._declare,
            forget=self._forget,
        )
        await consumer.start()
        self._names.add((keys.stream, consumer_name))
        self._consumers.add(consumer)
        mover = self._movers.get((queue, group))
        if mover is None:
            trim = self.declaration(queue).address is None  # another's stream keeps its retention
            mover = Mover(self._commands, queue, keys, group, trim=trim)
            self._movers[(queue, group)] = mover
            mover.start()
        mover.users += 1
        return consumer

    def _settler(self, consumer: RedisConsumer) -> Settler:
        return Settler(
            commands=self._commands,
            acks=self._acks,
            codec=self.codec,
            queue=consumer.queue,
            keys=consumer.keys,
            group=consumer.group,
            name=consumer.name,
            settled=consumer.settled,
            wake=self._wake,
        )

    def _forget(self, consumer: RedisConsumer) -> None:
        self._consumers.discard(consumer)
        if consumer.held:
            self._lingering.add(consumer)
        self._names.discard((consumer.keys.stream, consumer.name))
        mover = self._movers.get((consumer.queue, consumer.group))
        if mover is not None:
            mover.users -= 1
            if mover.users <= 0:
                del self._movers[(consumer.queue, consumer.group)]
                asyncio.get_running_loop().create_task(mover.stop())

    # -- inspecting ----------------------------------------------------------------------

    async def _length(self, queue: str) -> int:
        keys = self._keys(queue)
        result = await self._commands.script(
            LENGTH, (keys.stream, keys.delayed), (keys.retry_prefix,)
        )
        return int(result)

    async def _stats(self, queue: str) -> QueueStats:
        keys, options, commands = self._keys(queue), self.options, self._commands
        length = await self._length(queue)
        presence = options.consumers(queue, options.group)
        alive = await stats.consumers(commands, presence, options.claim_idle)
        in_flight = await stats.pending(commands, keys.stream, options.group)
        dead_letters = int(await commands.run(b"XLEN", keys.dead))
        return QueueStats(queue, length, alive, in_flight, dead_letters)

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        found = dead.letters(
            self._commands, self.codec, self.declaration(queue), self._keys(queue).dead, limit
        )
        return [letter async for _, letter in found]

    async def _requeue(self, queue: str, to: str, selection: Selection) -> int:
        source = (self.declaration(queue), self._keys(queue))
        target = (self.declaration(to), self._keys(to))
        return await dead.requeue(self._commands, self.codec, source, target, selection)

    async def _purge(self, queue: str, selection: Selection) -> int:
        dead_key = self._keys(queue).dead
        declaration = self.declaration(queue)
        return await dead.purge(self._commands, self.codec, declaration, dead_key, selection)

    async def _declare_queue(self, queue: Queue) -> None:
        """The stream and the consumer group, so plain producers can start first."""
        await self._declare(self._keys(queue.name).stream, self.options.group)

    def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        return tail(self.options, queue, self._keys(queue).stream, last, self._reader(queue))

    def _tail_keyed(self, queue: str, last: int, key: str) -> AsyncIterator[bytes]:
        codec = self.codec

        def matches(data: bytes) -> bool:
            try:
                return codec.decode(data).headers.get("x-key") == key
            except DecodeError:
                return False

        stream = self._keys(queue).stream
        return tail(self.options, queue, stream, last, self._reader(queue), matches)

    def _reader(self, queue: str) -> Read:
        """How ``tail()`` reads an entry: as the consumer would, re-encoded when adopted."""
        codec = self.codec
        declaration = self.declaration(queue)

        def read(entry_id: bytes, fields: list[bytes]) -> bytes | None:
            if len(fields) == 2 and fields[0] == DATA and fields[1].startswith(ENVELOPE):
                return bytes(fields[1])
            if GROUP in fields[::2]:
                return None  # a retry: not a new message
            raw, envelope, _ = decode(codec, entry_id, fields, declaration)
            if envelope is None:
                return bytes(raw)  # skipped with the reason by tail()
            try:
                return codec.encode(envelope)
            except PayloadError as exc:  # bytes payloads have no JSON form
                log.warning("tail of %r: skipped entry %s: %s", queue, entry_id.decode(), exc)
                return None

        return read
