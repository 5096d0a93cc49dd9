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
- ``tail()`` reads the topic without a group.

docs/transports/kafka.md describes the mapping, the guarantees and the options.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...envelope import Envelope, new_id
from ...errors import DecodeError, TransportError
from .consumer import KafkaConsumer
from .delayer import Mover
from .offsets import stop
from .options import KafkaOptions, parse
from .producer import Batcher
from .wire import ATTEMPT, DEAD_AT, GROUP, REASON, encoded, header

log = logging.getLogger("microhive.kafka")

TOPIC_EXISTS = 36


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
        self._producer: Any = None
        self._batcher: Batcher | None = None
        self._admin: Any = None
        self._inspector: Any = None
        self._inspecting = asyncio.Lock()
        self._topics: dict[str, asyncio.Future[None]] = {}
        self._consumers: set[KafkaConsumer] = set()
        self._movers: dict[str, Mover] = {}
        self._readers: set[Any] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.safe_url}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        options = self.options
        producer = AIOKafkaProducer(
            **options.common(),
            acks="all" if options.acks == "all" else 1,
            linger_ms=round(options.linger * 1000),
            max_batch_size=options.batch_size,
            enable_idempotence=False,
        )
        admin = AIOKafkaAdminClient(**options.common())
        try:
            async with asyncio.timeout(options.connect_timeout):
                await producer.start()
                await admin.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            if isinstance(exc, TimeoutError):
                raise TransportError(
                    f"{self!r}: no answer from {options.bootstrap} within "
                    f"{options.connect_timeout:g} s (connect_timeout)"
                ) from None
            if isinstance(exc, Exception):
                raise TransportError(
                    f"{self!r}: cannot connect to {options.bootstrap}: {exc}"
                ) from None
            raise
        self._producer, self._admin = producer, admin
        self._batcher = Batcher(producer)

    async def _close(self) -> None:
        for reader in list(self._readers):  # ends the tail() loops of this broker
            await stop(reader, repr(self))
        self._readers.clear()
        for consumer in list(self._consumers):
            await consumer.abort()
        self._consumers.clear()
        for mover in self._movers.values():
            await mover.stop()
        self._movers.clear()
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        inspector, self._inspector = self._inspector, None
        self._topics.clear()
        if producer is not None:
            await stop(producer, repr(self))  # sends what is batched first
        if inspector is not None:
            await stop(inspector, repr(self))
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    def _forget(self, consumer: KafkaConsumer) -> None:
        self._consumers.discard(consumer)

    # -- topics --------------------------------------------------------------------------

    async def _ensure(self, queue: str) -> None:
        """Create the queue's topics if missing (once per broker)."""
        known = self._topics.get(queue)
        if known is not None:
            if not known.done():
                await asyncio.shield(known)
                return
            if known.exception() is None:
                return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._topics[queue] = future
        try:
            await self._create(queue)
        except BaseException as exc:
            del self._topics[queue]
            future.set_exception(exc)
            future.exception()  # retrieved: the next call tries again
            raise
        future.set_result(None)

    async def _create(self, queue: str) -> None:
        options = self.options
        topics = [
            NewTopic(options.topic(queue), options.partitions, options.replication),
            NewTopic(options.delay_topic(queue), 1, options.replication),
            NewTopic(options.dead_topic(queue), 1, options.replication),
        ]
        try:
            response = await self._require(self._admin).create_topics(topics)
        except Exception as exc:
            raise TransportError(
                f"{self!r}: cannot create the topics of {queue!r}: {exc}"
            ) from None
        for error in getattr(response, "topic_errors", ()):
            topic, code = error[0], error[1]
            if code not in (0, TOPIC_EXISTS):
                message = error[2] if len(error) > 2 else ""
                raise TransportError(
                    f"{self!r}: cannot create topic {topic!r}: error {code} {message or ''}"
                )

    def _require(self, client: Any) -> Any:
        if client is None:
            raise TransportError(f"{self!r} is not connected")
        return client

    # -- producing -----------------------------------------------------------------------

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        known = self._topics.get(queue)
        if known is None or not known.done() or known.exception() is not None:
            await self._ensure(queue)
        raw_key = key.encode() if key is not None else None
        if delay > 0:
            due = encoded(due=str(int((time.time() + delay) * 1000)))
            await self._produce(self.options.delay_topic(queue), data, raw_key, due)
        else:
            await self._produce(self.options.topic(queue), data, raw_key, None)

    async def _produce(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None
    ) -> None:
        """One record, returning once the cluster acknowledged it."""
        batcher = self._require(self._batcher)
        try:
            await batcher.send(topic, value, key, headers)
        except Exception as exc:
            raise TransportError(f"{self!r}: producing to {topic!r} failed: {exc}") from None

    async def _requeue(
        self, queue: str, data: bytes, key: bytes | None, delay: float, attempt: int
    ) -> None:
        """A retry for this broker's group: to the delay topic, or at once to the queue."""
        headers = encoded(group=self.options.group, attempt=str(attempt))
        if delay > 0:
            headers += encoded(due=str(int((time.time() + delay) * 1000)))
            await self._produce(self.options.delay_topic(queue), data, key, headers)
        else:
            await self._produce(self.options.topic(queue), data, key, headers)

    async def _bury(
        self, queue: str, raw: bytes, key: bytes | None, reason: str, attempt: int
    ) -> None:
        headers = encoded(
            reason=reason,
            attempt=str(attempt),
            queue=queue,
            group=self.options.group,
            dead_at=f"{time.time():.3f}",
        )
        await self._produce(self.options.dead_topic(queue), raw, key, headers)

    async def publish_raw(self, queue: str, data: bytes, key: bytes | None = None) -> None:
        """Produce bytes as they are (tests and tools: what a foreign producer would send)."""
        await self.connect()
        await self._ensure(queue)
        await self._produce(self.options.topic(queue), data, key, None)

    # -- consuming -----------------------------------------------------------------------

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        await self._ensure(queue)
        if queue not in self._movers:
            mover = self._movers[queue] = Mover(self, queue)
            try:
                await mover.start()
            except Exception as exc:
                del self._movers[queue]
                raise TransportError(f"{self!r}: cannot consume {queue!r}: {exc}") from None
        consumer = KafkaConsumer(self, queue, name or f"consumer.{new_id()[:8]}", prefetch)
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
        await self._ensure(queue)
        for consumer in list(self._consumers):
            if consumer.queue == queue:
                await consumer.flush()  # what was settled here counts at once
        mover = self._movers.get(queue)
        if mover is not None:
            await mover.flush()
        options = self.options
        try:
            waiting = await self._lag(options.topic(queue), options.group_id(queue))
            delayed = await self._lag(options.delay_topic(queue), options.delay_group(queue))
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"{self!r}: length of {queue!r}: {exc}") from None
        return waiting + delayed

    async def _lag(self, topic: str, group: str) -> int:
        partitions = await self._partitions(topic)
        starts, ends = await self._bounds(partitions)
        committed = await self._require(self._admin).list_consumer_group_offsets(
            group, partitions=partitions
        )
        lag = 0
        for tp in partitions:
            start = starts.get(tp, 0)
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else start
            lag += max(0, ends.get(tp, 0) - max(start, position))
        return lag

    async def _partitions(self, topic: str) -> list[Any]:
        numbers = await self._require(self._producer).partitions_for(topic)
        if not numbers:
            raise TransportError(f"{self!r}: topic {topic!r} has no partitions")
        return [TopicPartition(topic, number) for number in sorted(numbers)]

    async def _bounds(self, partitions: list[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
        """The first and the next offset of each partition.

        The end is read from a fetch of the last record, not only from ListOffsets: Tansu
        (0.6) answers ListOffsets with the offset after the *first* record of the newest
        batch, which undercounts when a batch held several records. A fetch at that
        offset returns the whole batch and the true high watermark (the same answer as
        ListOffsets on Apache Kafka, at the cost of one fetch).
        """
        async with self._inspecting:
            if self._inspector is None:
                inspector = AIOKafkaConsumer(**self.options.common(), enable_auto_commit=False)
                await inspector.start()
                self._inspector = inspector
            inspector = self._inspector
            starts = await inspector.beginning_offsets(partitions)
            ends = dict(await inspector.end_offsets(partitions))
            unsure = [tp for tp in partitions if ends.get(tp, 0) > starts.get(tp, 0)]
            if not unsure:
                return starts, ends
            inspector.assign(unsure)
            for tp in unsure:
                inspector.seek(tp, ends[tp] - 1)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.options.request_timeout
            while unsure and loop.time() < deadline:
                batch = await inspector.getmany(*unsure, timeout_ms=500)
                for tp, records in batch.items():
                    if records:
                        high = inspector.highwater(tp) or 0
                        ends[tp] = max(ends[tp], high, records[-1].offset + 1)
                        unsure.remove(tp)
            inspector.assign([])
            return starts, ends

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        await self._ensure(queue)
        topic = self.options.dead_topic(queue)
        partitions = await self._partitions(topic)
        starts, ends = await self._bounds(partitions)
        records: list[Any] = []
        async with self._reader() as reader:
            for tp in partitions:
                start = starts.get(tp, 0)
                records += await _read(reader, tp, start, min(ends.get(tp, 0), start + limit))
        records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        return [self._dead_letter(queue, record) for record in records[:limit]]

    def _dead_letter(self, queue: str, record: Any) -> DeadLetter:
        raw = record.value or b""
        try:
            envelope: Envelope | None = self.codec.decode(raw)
        except DecodeError:
            envelope = None
        headers = record.headers or ()
        return DeadLetter(
            queue=queue,
            reason=header(headers, REASON) or "",
            raw=raw,
            envelope=envelope,
            attempt=_number(header(headers, ATTEMPT), 1, int),
            dead_at=_number(header(headers, DEAD_AT), record.timestamp / 1000, float),
        )

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[Any]:
        """A consumer outside any group that reads partitions it is given."""
        reader = AIOKafkaConsumer(
            **self.options.common(), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await reader.start()
        self._readers.add(reader)
        try:
            yield reader
        finally:
            self._readers.discard(reader)
            await stop(reader, repr(self))

    # -- replay --------------------------------------------------------------------------

    async def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The last ``last`` messages of the queue, then every new one.

        Kafka orders records per partition only: the history is the newest ``last`` of all
        partitions ordered by record time (then by the envelope's ``sent_at``), and what
        arrives later is yielded in that order within each fetch. Retries (records with a
        group header) are not new messages and are left out.
        """
        await self._ensure(queue)
        topic = self.options.topic(queue)
        partitions = await self._partitions(topic)
        starts, ends = await self._bounds(partitions)
        async with self._reader() as reader:
            history: list[Any] = []
            if last > 0:
                for tp in partitions:
                    history += await _newest(reader, tp, starts.get(tp, 0), ends.get(tp, 0), last)
            for record in self._ordered(history)[-last:] if last else ():
                yield record.value
            reader.assign(partitions)
            for tp in partitions:
                reader.seek(tp, ends.get(tp, 0))
            while self.connected:
                try:
                    batch = await reader.getmany(timeout_ms=1000)
                except Exception as exc:
                    if not self.connected:
                        return
                    log.warning("tail of %r: %s; trying again", queue, exc)
                    await asyncio.sleep(1.0)
                    continue
                fresh = [r for records in batch.values() for r in records if _is_new(r)]
                for record in self._ordered(fresh):
                    yield record.value

    def _ordered(self, records: list[Any]) -> list[Any]:
        def when(record: Any) -> tuple[int, float, int, int]:
            try:
                sent_at = self.codec.decode(record.value or b"").sent_at
            except DecodeError:
                sent_at = 0.0
            return (record.timestamp, sent_at, record.partition, record.offset)

        return sorted(records, key=when)


def _is_new(record: Any) -> bool:
    """A message as sent, not a retry (which carries the group it is for)."""
    return not record.headers or header(record.headers, GROUP) is None


async def _newest(reader: Any, tp: Any, start: int, end: int, count: int) -> list[Any]:
    """At least ``count`` new (non-retry) records from the end of a partition, when it has
    them: reads backwards in growing steps."""
    found: list[Any] = []
    stop, begin = end, max(start, end - count)
    while True:
        found = [r for r in await _read(reader, tp, begin, stop) if _is_new(r)] + found
        if len(found) >= count or begin <= start:
            return found
        stop, begin = begin, max(start, begin - 2 * (count - len(found)))


async def _read(reader: Any, tp: Any, start: int, stop: int) -> list[Any]:
    """The records of one partition from offset ``start`` to before ``stop``."""
    if stop <= start:
        return []
    reader.assign([tp])
    reader.seek(tp, start)
    records: list[Any] = []
    idle = 0
    while await reader.position(tp) < stop and idle < 10:
        batch = await reader.getmany(tp, timeout_ms=500)
        got = batch.get(tp, [])
        idle = 0 if got else idle + 1
        records += [record for record in got if record.offset < stop]
    return records


def _number(text: str | None, default: Any, kind: Any) -> Any:
    try:
        return kind(text) if text is not None else default
    except ValueError:
        return default
