"""Producing: the sends of one event-loop iteration go out as one batch per partition.

``await broker.send(...)`` returns once the cluster acknowledged the record, so throughput
comes from many sends in flight at once. aiokafka's ``send()`` batches those too, but pays
for a coroutine, a metadata check and an accumulator round per record; here the records
of an iteration are gathered per partition and handed to aiokafka as finished batches
(``create_batch`` / ``send_batch``), and one acknowledgement settles them all.

Partitions are chosen as aiokafka's default partitioner does (murmur2 of the key, as the
Java client), so a key lands where other Kafka clients put it; records without a key go
to one partition per batch, in turn.

:class:`Outlet` knows which topic a record goes to: the queue's, its delay topic (with the
due time) or its dead-letter topic (with the reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from .options import KafkaOptions
from .wire import encoded

log = logging.getLogger("microhive.kafka")

Headers = list[tuple[str, bytes]] | None
Item = tuple[bytes | None, bytes, Headers, asyncio.Future[None]]
Produce = Callable[[str, bytes, bytes | None, Headers], Awaitable[None]]


class Outlet:
    """Where a queue's records go: new and retried messages to the queue's topic (through
    its delay topic when they are not due yet), dead letters to its dead-letter topic.

    Deliveries settle through it (via their consumer), the broker publishes through it.
    """

    __slots__ = ("options", "produce")

    def __init__(self, options: KafkaOptions, produce: Produce) -> None:
        self.options = options
        self.produce = produce

    def send(
        self, queue: str, data: bytes, key: bytes | None, delay: float, headers: Headers
    ) -> Awaitable[None]:
        """A new message: the produce to await (returned as it is, so that the hot path of
        every send pays for no coroutine of its own here)."""
        if delay > 0:
            due = encoded(due=_due(delay))
            return self.produce(self.options.delay_topic(queue), data, key, (headers or []) + due)
        return self.produce(self.options.topic(queue), data, key, headers)

    async def requeue(
        self,
        queue: str,
        data: bytes,
        key: bytes | None,
        delay: float,
        attempt: int,
        marks: list[tuple[str, bytes]],
    ) -> None:
        """A retry for this broker's group: to the delay topic, or at once to the queue."""
        headers = marks + encoded(group=self.options.group, attempt=str(attempt))
        if delay > 0:
            headers += encoded(due=_due(delay))
            await self.produce(self.options.delay_topic(queue), data, key, headers)
        else:
            await self.produce(self.options.topic(queue), data, key, headers)

    async def bury(
        self,
        queue: str,
        raw: bytes,
        key: bytes | None,
        reason: str,
        attempt: int,
        kept: list[tuple[str, bytes]],
    ) -> None:
        """To the dead-letter topic, with the record's own headers ``kept`` (the marker, a
        plain producer's headers) and why."""
        headers = kept + encoded(
            reason=reason,
            attempt=str(attempt),
            queue=queue,
            group=self.options.group,
            dead_at=f"{time.time():.3f}",
        )
        await self.produce(self.options.dead_topic(queue), raw, key, headers)


def _due(delay: float) -> str:
    """The ``microhive-due`` header: when a delayed record may go back (Unix time in ms)."""
    return str(int((time.time() + delay) * 1000))


class Batcher:
    """Gathers records per (topic, partition) and sends each group as aiokafka batches."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.partitioner = DefaultPartitioner()
        self.partitions: dict[str, list[int]] = {}
        self.pending: dict[tuple[str, int], list[Item]] = {}
        self.turn = 0
        self.scheduled = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        """Returns once the record is acknowledged (raises what the producer raised)."""
        partitions = self.partitions.get(topic)
        if partitions is None:
            partitions = self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        if key is None:
            partition = partitions[self.turn % len(partitions)]
        else:
            partition = self.partitioner(key, partitions, partitions)
        done: asyncio.Future[None] = self.loop.create_future()
        group = self.pending.get((topic, partition))
        if group is None:
            group = self.pending[(topic, partition)] = []
        group.append((key, value, headers, done))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._flush)
        await done

    def _flush(self) -> None:
        self.scheduled = False
        self.turn += 1
        pending, self.pending = self.pending, {}
        for (topic, partition), items in pending.items():
            task = self.loop.create_task(self._send(topic, partition, items))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, topic: str, partition: int, items: list[Item]) -> None:
        """Submit every batch first (aiokafka sends them back to back), then settle each
        batch's records with its acknowledgement."""
        producer = self.producer
        submitted: list[tuple[list[Item], Any]] = []
        start = 0
        try:
            while start < len(items):
                batch, end = producer.create_batch(), start
                while end < len(items):
                    key, value, headers, _ = items[end]
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        break  # full
                    end += 1
                if end == start:  # one record larger than a batch: aiokafka's own path
                    key, value, headers, _ = items[start]
                    end = start + 1
                    sent = await producer.send(
                        topic, value, key=key, partition=partition, headers=headers
                    )
                else:
                    sent = await producer.send_batch(batch, topic, partition=partition)
                submitted.append((items[start:end], sent))
                start = end
        except Exception as exc:
            _fail(items[start:], exc)
        for group, acknowledged in submitted:
            try:
                await acknowledged
            except Exception as exc:
                _fail(group, exc)
            else:
                for *_, done in group:
                    if not done.done():
                        done.set_result(None)

    async def close(self) -> None:
        """Let the batches on their way finish (the producer's stop() flushes them)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=30)


def _fail(items: list[Item], exc: Exception) -> None:
    for *_, done in items:
        if not done.done():
            done.set_exception(exc)
