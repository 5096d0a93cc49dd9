"""Queues inside one process: FIFO, competing consumers, delayed retries, dead letters.

Nothing survives the process; use it for tests, demos and single-process programs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ...broker import Consumer, DeadLetter, Delivery, QueueBroker
from ...capabilities import Capabilities
from ...declarations import Exchange, Queue
from ...envelope import Envelope
from ...errors import ConsumerClosed, DecodeError, UnroutableError
from . import routing
from .hive import Hive, MemoryQueue, hive_for


def _compact(data: bytes) -> bytes:
    """A right-sized copy of encoded bytes that will be kept a while.

    orjson writes into a 1 KiB buffer and shrinks it; thousands of such shrunk blocks held
    at once fragment the heap until every later dumps() costs several times more. A copy
    (tens of nanoseconds) keeps the queue's memory compact.
    """
    return bytes(memoryview(data))


class MemoryDelivery(Delivery):
    __slots__ = ("broker", "queue")

    def __init__(
        self,
        broker: MemoryBroker,
        queue: MemoryQueue,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.broker = broker
        self.queue = queue

    async def ack(self) -> None:
        if self._settle():
            self.queue.in_flight -= 1

    async def retry(self, delay: float, reason: str) -> None:
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        data = _compact(
            self.broker.codec.encode(self.envelope.next_attempt(**{"x-last-error": reason}))
        )
        self.queue.in_flight -= 1
        if delay > 0:
            self.queue.put_later(data, delay)
        else:
            self.queue.put(data)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            self.queue.dead_letter(reason, self.raw, self.envelope)
            self.queue.in_flight -= 1

    async def release(self) -> None:
        if self._settle():
            self.queue.in_flight -= 1
            self.queue.put(self.raw, front=True)


class MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, queue: MemoryQueue) -> None:
        self.broker = broker
        self.queue = queue
        self.closed = False
        self._waiting: set[asyncio.Future[bytes]] = set()

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.queue.name)
        raw = await self.queue.get(self._waiting)
        try:
            envelope: Envelope | None = self.broker.codec.decode(raw)
            error = None
        except DecodeError as exc:
            envelope, error = None, str(exc)
        return MemoryDelivery(self.broker, self.queue, raw, envelope, error)

    async def close(self) -> None:
        self.closed = True
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(ConsumerClosed(self.queue.name))


class MemoryBroker(QueueBroker):
    """``memory://[name]``: queues shared by every broker of the same hive on this event loop."""

    capabilities = Capabilities(
        out_of_process=False,
        durable=False,
        delayed_delivery=True,
        dead_letter=True,
        replay=True,
        routing=True,
    )

    def __init__(self, url: str = "memory://", *, hive: Hive | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._given_hive = hive
        self._hive: Hive | None = None
        self._followers: set[asyncio.Queue[bytes | None]] = set()

    @property
    def hive(self) -> Hive:
        if self._hive is None:
            raise RuntimeError(f"{self!r} is not connected")
        return self._hive

    async def _connect(self) -> None:
        self._hive = self._given_hive or hive_for(self.url)

    async def _close(self) -> None:
        for follower in self._followers:
            follower.put_nowait(None)  # ends the tail() loops of this broker
        self._hive = None

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        data = _compact(data)
        target = self.hive.queue(queue)
        target.record(data)
        if delay > 0:
            target.put_later(data, delay)
        else:
            target.put(data)

    async def _bind(self, queue: Queue) -> None:
        self.hive.queue(queue.name)
        for binding in queue.bindings:
            routing.declare(self.hive.exchanges, binding.exchange).bind(queue.name, binding.key)

    async def _publish_routed(
        self, exchange: Exchange, routing_key: str, envelope: Envelope, data: bytes
    ) -> None:
        targets = routing.declare(self.hive.exchanges, exchange).route(routing_key)
        if not targets:
            raise UnroutableError(
                f"no queue is bound to exchange {exchange.name!r} for routing key {routing_key!r}"
            )
        data = _compact(data)
        for name in targets:
            target = self.hive.queue(name)
            target.record(data)
            target.put(data)

    async def publish_raw(self, queue: str, data: bytes) -> None:
        """Enqueue bytes as they are, as a foreign producer would (tests of bad input)."""
        await self.connect()
        target = self.hive.queue(queue)
        target.record(data)
        target.put(data)

    async def _length(self, queue: str) -> int:
        return len(self.hive.queue(queue))

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        return list(self.hive.queue(queue).dead[:limit])

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        return MemoryConsumer(self, self.hive.queue(queue))

    async def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        target = self.hive.queue(queue)
        follower: asyncio.Queue[bytes | None] = asyncio.Queue()
        recent = list(target.history)[-last:] if last else []
        target.followers.add(follower)
        self._followers.add(follower)
        try:
            for old in recent:
                yield old
            while (new := await follower.get()) is not None:
                yield new
        finally:
            target.followers.discard(follower)
            self._followers.discard(follower)
