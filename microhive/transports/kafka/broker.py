"""Durable queues on Kafka topics and consumer groups (aiokafka).

- A queue is the topic ``<prefix>.queue.<name>`` (``partitions`` partitions when microhive
  creates it); ``key=`` picks the partition, so messages with one key keep their order.
  A message is a record whose value is the envelope (docs/wire-format.md).
- ``send`` returns once the cluster acknowledged the record (``acks=all`` by default);
  concurrent sends are batched by aiokafka's producer.
- Every consumer of this broker joins the consumer group ``group`` (default
  ``microhive``): they compete, as on every transport. Offsets are committed after the
  handler, never past a message that is not processed (:mod:`.offsets`).
- Retries and delayed sends go through the delay topic (:mod:`.delayer`); dead letters to
  ``<prefix>.dead.<name>`` with reason and attempt in record headers.
- ``length()`` is the group's lag plus the delayed messages not yet moved back.
- ``tail()`` reads the topic without a group (:mod:`.tail`).

The parts: :mod:`.link` (producer, admin client, connecting), :mod:`.topics` (creating
topics, offsets and lag), :mod:`.consumer`, :mod:`.delayer`, :mod:`.tail`,
:mod:`.deadletters`. Deliveries settle through their consumer and the :class:`.Outlet`,
never through the broker.

docs/transports/kafka.md describes the mapping, the guarantees and the options.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...envelope import Envelope, new_id
from ...errors import TransportError
from .consumer import KafkaConsumer
from .deadletters import dead_letters
from .delayer import Mover
from .link import Link
from .options import KafkaOptions, parse
from .producer import Outlet
from .tail import Readers, tail
from .topics import Topics


class KafkaBroker(QueueBroker):
    """``kafka://host:port[,host:port...][?prefix=...&group=...]``: the options are in
    docs/transports/kafka.md."""

    capabilities = Capabilities(
        out_of_process=True,
        durable=True,
        delayed_delivery=True,
        dead_letter=True,
        replay=True,
        partitions=True,
    )

    def __init__(self, url: str = "kafka://", **options: Any) -> None:
        super().__init__(url, **options)
        self.options: KafkaOptions = parse(url)
        what = repr(self)
        self._link = Link(self.options, what)
        self._topics = Topics(self._link)
        self._outlet = Outlet(self.options, self._link.produce)
        self._readers = Readers(self.options, what)
        self._consumers: set[KafkaConsumer] = set()
        self._movers: dict[str, Mover] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.safe_url}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        await self._link.connect()

    async def _close(self) -> None:
        await self._readers.close()  # ends the tail() loops of this broker
        for consumer in list(self._consumers):
            await consumer.abort()
        self._consumers.clear()
        for mover in self._movers.values():
            await mover.stop()
        self._movers.clear()
        await self._link.close()  # sends what is batched first
        await self._topics.close()

    # -- producing -----------------------------------------------------------------------

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        if queue not in self._topics.ready:
            await self._topics.ensure(queue)
        raw_key = key.encode() if key is not None else None
        await self._outlet.send(queue, data, raw_key, delay)

    async def publish_raw(self, queue: str, data: bytes, key: bytes | None = None) -> None:
        """Produce bytes as they are (tests and tools: what a foreign producer would send)."""
        await self.connect()
        await self._topics.ensure(queue)
        await self._outlet.send(queue, data, key, 0)

    # -- consuming -----------------------------------------------------------------------

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        await self._topics.ensure(queue)
        if queue not in self._movers:
            mover = self._movers[queue] = Mover(self.options, self._link.produce, queue)
            try:
                await mover.start()
            except Exception as exc:
                del self._movers[queue]
                raise TransportError(f"{self!r}: cannot consume {queue!r}: {exc}") from None
        consumer = KafkaConsumer(
            self.options,
            self._outlet,
            self.codec,
            queue,
            name or f"consumer.{new_id()[:8]}",
            prefetch,
            self._consumers.discard,
        )
        try:
            await consumer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await consumer.abort()
            raise TransportError(f"{self!r}: cannot consume {queue!r}: {exc}") from None
        self._consumers.add(consumer)
        return consumer

    # -- inspecting ----------------------------------------------------------------------

    async def _length(self, queue: str) -> int:
        """The group's lag on the queue's topic plus the delayed messages not moved yet."""
        await self._topics.ensure(queue)
        for consumer in list(self._consumers):
            if consumer.queue == queue:
                await consumer.flush()  # what was settled here counts at once
        mover = self._movers.get(queue)
        if mover is not None:
            await mover.flush()
        options, topics = self.options, self._topics
        try:
            waiting = await topics.lag(options.topic(queue), options.group_id(queue))
            delayed = await topics.lag(options.delay_topic(queue), options.delay_group(queue))
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"{self!r}: length of {queue!r}: {exc}") from None
        return waiting + delayed

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        return await dead_letters(self._topics, self._readers, self.codec, queue, limit)

    def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The last ``last`` messages of the queue, then every new one (:mod:`.tail`)."""
        return tail(self._topics, self._readers, self.codec, queue, last, lambda: self.connected)
