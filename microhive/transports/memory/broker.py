"""Queues inside one process: FIFO, competing consumers, delayed retries, dead letters.

Nothing survives the process; use it for tests, demos and single-process programs. The
parts: :mod:`.hive` (where brokers and buses meet), :mod:`.queues` (one queue),
:mod:`.consumer`, :mod:`.routing` (exchanges), :mod:`.tail` (replay).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...codecs import Codec
from ...deadletters import Selection, requeued
from ...declarations import Exchange, Queue
from ...envelope import Envelope
from ...errors import DecodeError, UnroutableError
from ...stats import QueueStats
from . import routing
from .consumer import MemoryConsumer
from .hive import Hive, hive_for
from .queues import compact
from .tail import Tails


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
        self._tails = Tails()

    @property
    def hive(self) -> Hive:
        if self._hive is None:
            raise RuntimeError(f"{self!r} is not connected")
        return self._hive

    async def _connect(self) -> None:
        self._hive = self._given_hive or hive_for(self.url)

    async def _close(self) -> None:
        self._tails.close()  # ends the tail() loops of this broker
        self._hive = None

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        data = compact(data)
        target = self.hive.queue(queue)
        target.history.record(data)
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
        data = compact(data)
        for name in targets:
            target = self.hive.queue(name)
            target.history.record(data)
            target.put(data)

    async def publish_raw(self, queue: str, data: bytes) -> None:
        """Enqueue bytes as they are, as a foreign producer would (tests of bad input)."""
        await self.connect()
        target = self.hive.queue(queue)
        target.history.record(data)
        target.put(data)

    async def _length(self, queue: str) -> int:
        return len(self.hive.queue(queue))

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        return list(self.hive.queue(queue).dead[:limit])

    async def _stats(self, queue: str) -> QueueStats:
        found = self.hive.queue(queue)
        return QueueStats(queue, len(found), found.consumers, found.in_flight, len(found.dead))

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        return MemoryConsumer(self.codec, self.hive.queue(queue), self.declaration(queue))

    def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        return self._tails.follow(self.hive.queue(queue).history, last)

    def _tail_keyed(self, queue: str, last: int, key: str) -> AsyncIterator[bytes]:
        history = self.hive.queue(queue).history
        return self._tails.follow(history, last, lambda data: _key_of(self.codec, data) == key)

    async def _requeue(self, queue: str, to: str, selection: Selection) -> int:
        source, target = self.hive.queue(queue), self.hive.queue(to)
        moved = 0
        for letter in selection.choose(list(source.dead)):
            data = compact(requeued(self.codec, letter, to))
            target.history.record(data)
            target.put(data)  # published first, then taken out of the dead letters
            source.dead.remove(letter)
            moved += 1
        return moved

    async def _purge(self, queue: str, selection: Selection) -> int:
        source = self.hive.queue(queue)
        chosen = selection.choose(list(source.dead))
        for letter in chosen:
            source.dead.remove(letter)
        return len(chosen)

    async def _declare_queue(self, queue: Queue) -> None:
        self.hive.queue(queue.name)
        if queue.bindings:
            await self._bind(queue)


def _key_of(codec: Codec, data: bytes) -> str | None:
    try:
        return codec.decode(data).headers.get("x-key")
    except DecodeError:
        return None
