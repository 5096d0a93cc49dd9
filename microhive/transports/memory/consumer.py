"""A consumer of one in-process queue, and its deliveries.

A delivery settles through its :class:`~.queues.MemoryQueue` (settle, again, back, bury),
which keeps the queue's in-flight count right; nothing here reaches into the broker.
"""

from __future__ import annotations

import asyncio

from ...adoption import incoming
from ...broker import Consumer, Delivery
from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope
from ...errors import ConsumerClosed
from .queues import MemoryQueue, compact


class MemoryDelivery(Delivery):
    __slots__ = ("codec", "queue")

    def __init__(
        self,
        codec: Codec,
        queue: MemoryQueue,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.codec = codec
        self.queue = queue

    async def ack(self) -> None:
        if self._settle():
            self.queue.settle()

    def ack_now(self) -> bool:
        if self._settle():
            self.queue.settle()
        return True

    async def retry(self, delay: float, reason: str) -> None:
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        data = self.codec.encode(self.envelope.next_attempt(**{"x-last-error": reason}))
        self.queue.again(compact(data), delay)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            self.queue.bury(reason, self.raw, self.envelope)

    async def release(self) -> None:
        if self._settle():
            self.queue.back(self.raw)


class MemoryConsumer(Consumer):
    def __init__(self, codec: Codec, queue: MemoryQueue, declaration: Queue) -> None:
        self.codec = codec
        self.queue = queue
        self.declaration = declaration
        self.closed = False
        self._waiting: set[asyncio.Future[bytes]] = set()
        queue.consumers += 1

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.queue.name)
        return self._delivery(await self.queue.get(self._waiting))

    def ready(self, limit: int) -> list[Delivery]:
        if self.closed:
            return []
        return [self._delivery(raw) for raw in self.queue.take_now(limit)]

    def _delivery(self, raw: bytes) -> MemoryDelivery:
        """A body a plain producer put in the hive is adopted as on every engine."""
        envelope, error = incoming(self.codec, raw, self.declaration)
        return MemoryDelivery(self.codec, self.queue, raw, envelope, error)

    async def close(self) -> None:
        if not self.closed:
            self.queue.consumers -= 1
        self.closed = True
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(ConsumerClosed(self.queue.name))
