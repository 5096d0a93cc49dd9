"""The consumers of one NATS broker and the trimmers of their queues: what a consumer tells
its broker about its life cycle (:class:`~.consumer.Owner`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from .jetstream import JetStream
from .trim import Trimmer

if TYPE_CHECKING:
    from .consumer import NatsConsumer


class Declare(Protocol):
    async def __call__(self, queue: str, *, force: bool = False) -> None: ...


class Consumers:
    """The consumers of one broker and the trimmers of their queues: what a consumer tells
    its broker about its life cycle (:class:`~.consumer.Owner`)."""

    def __init__(self, declare: Declare, jetstream: JetStream) -> None:
        self.declare = declare
        self.jetstream = jetstream
        self.running: set[NatsConsumer] = set()
        self.trimmers: dict[str, Trimmer] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def add(self, consumer: NatsConsumer) -> None:
        self.running.add(consumer)
        if not consumer.place.owned:
            return  # an operator's stream: its own limits, never purged by microhive
        trimmer = self.trimmers.get(consumer.queue)
        if trimmer is None:
            trimmer = self.trimmers[consumer.queue] = Trimmer(self.jetstream, consumer.queue)
            trimmer.start()
        trimmer.users += 1

    async def redeclare(self, queue: str) -> None:
        await self.declare(queue, force=True)

    def stopped(self, consumer: NatsConsumer) -> None:
        """It stays known while its keeper runs (it may still hold deliveries)."""
        trimmer = self.trimmers.get(consumer.queue)
        if trimmer is not None and consumer.place.owned:
            trimmer.users -= 1
            if trimmer.users <= 0:
                del self.trimmers[consumer.queue]
                task = asyncio.get_running_loop().create_task(trimmer.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def ended(self, consumer: NatsConsumer) -> None:
        self.running.discard(consumer)

    async def abort(self) -> None:
        running, self.running = list(self.running), set()
        for consumer in running:
            await consumer.abort()
        trimmers, self.trimmers = list(self.trimmers.values()), {}
        for trimmer in trimmers:
            await trimmer.stop()
