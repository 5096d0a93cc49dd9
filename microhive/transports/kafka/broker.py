"""Durable queues on Kafka topics and consumer groups (aiokafka).

- A queue is the topic ``<prefix>.queue.<name>`` (``partitions`` partitions when microhive
  creates it), or its ``address`` verbatim; ``key=`` picks the partition, so messages with
  one key keep their order. A message is a record whose value is the envelope
  (docs/wire-format.md) and whose header ``microhive`` marks it; records of other clients
  are adopted as payloads (:mod:`.plain`).
- ``send`` returns once the cluster acknowledged the record (``acks=all`` by default);
  concurrent sends are batched by aiokafka's producer.
- Every consumer of this broker joins the consumer group ``group`` (default
  ``microhive``): they compete, as on every transport. Offsets are committed after the
  handler, never past a message that is not processed (:mod:`.offsets`).
- Retries and delayed sends go through the delay topic (:mod:`.delayer`); dead letters to
  ``<prefix>.dead.<name>`` with reason and attempt in record headers; requeue and purge
  keep a done position beside them (:mod:`.deadletters`).
- ``length()`` is the group's lag plus the delayed messages not yet moved back.
- ``tail()`` reads the topic without a group (:mod:`.tail`); ``tail(key=...)`` only the
  partition of that key.

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
from ...deadletters import Selection
from ...declarations import Queue
from ...envelope import Envelope, new_id
from ...errors import TransportError
from ...stats import QueueStats
from .consumer import KafkaConsumer
from .deadletters import DeadLetters
from .delayer import Mover
from .link import Link
from .options import KafkaOptions, parse
from .plain import MARKED, outgoing
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
        self._topics = Topics(self._link, self.declaration)
        self._outlet = Outlet(self.options, self._link.produce)
        self._readers = Readers(self.options, what)
        self._dead = DeadLetters(self._topics, self._readers, self.codec, self.declaration)
        self._kinds: dict[str, Queue] = {}  # the declarations of queues sent to
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
        declared = self._kinds.get(queue)
        if declared is None:
            declared = self._kinds[queue] = self.declaration(queue)
        if declared.payload == "json":
            await self._outlet.send(queue, data, raw_key, delay, MARKED)
        else:  # the bare text or bytes, for plain consumers; the rest in a header
            value, marks = outgoing(declared, envelope, data)
            await self._outlet.send(queue, value, raw_key, delay, marks)

    async def publish_raw(
        self,
        queue: str,
        data: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce bytes as they are (tests and tools: what a foreign producer would send)."""
        await self.connect()
        await self._topics.ensure(queue)
        await self._outlet.send(queue, data, key, 0, headers)

    async def _send_requeued(
        self, queue: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await self._outlet.send(queue, value, key, 0, headers)

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
            self.declaration(queue),
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

    async def _stats(self, queue: str) -> QueueStats:
        """Consumers are the queue group's members; in flight is None: a record a consumer
        fetched and has not committed is still part of the group's lag (the length), and
        Kafka keeps no count of what a member holds."""
        length = await self._length(queue)
        try:
            members = await self._topics.members(self.options.group_id(queue))
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"{self!r}: consumers of {queue!r}: {exc}") from None
        return QueueStats(queue, length, members, None, await self._dead.count(queue))

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        return await self._dead.oldest(queue, limit)

    async def _requeue(self, queue: str, to: str, selection: Selection) -> int:
        return await self._dead.requeue(queue, to, selection, self._send_requeued)

    async def _purge(self, queue: str, selection: Selection) -> int:
        return await self._dead.purge(queue, selection)

    async def _declare_queue(self, queue: Queue) -> None:
        """The queue's topic (its address, if given: created when missing), delay and
        dead-letter topics."""
        await self._topics.ensure(queue.name)

    def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The last ``last`` messages of the queue, then every new one (:mod:`.tail`)."""
        return tail(
            self._topics,
            self._readers,
            self.codec,
            self.declaration(queue),
            last,
            lambda: self.connected,
        )

    def _tail_keyed(self, queue: str, last: int, key: str) -> AsyncIterator[bytes]:
        """As :meth:`_tail`, reading only the partition ``key`` maps to."""
        return tail(
            self._topics,
            self._readers,
            self.codec,
            self.declaration(queue),
            last,
            lambda: self.connected,
            key,
        )
