"""Replay: reading a queue's topic outside any group (``tail()``), and the readers for it.

Kafka orders records per partition only: the history is the newest ``last`` of all
partitions ordered by record time (then by the envelope's ``sent_at``), and what arrives
later is yielded in that order within each fetch. Retries (records with a group header)
are not new messages and are left out. Nothing is committed: consumers are not affected.

With a key (``tail(key=...)``) only the partition the key maps to is read (murmur2, as the
Java client and microhive's producer choose it), backwards until ``last`` records of that
key are found. Records of clients without microhive are adopted as consumers adopt them
(:mod:`.plain`) and yielded as envelopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from ...codecs import Codec
from ...declarations import Queue
from ...errors import DecodeError
from ..links import RECONNECT
from .offsets import stop
from .options import KafkaOptions
from .plain import reencoded
from .topics import Topics
from .wire import GROUP, header

log = logging.getLogger("microhive.kafka")


class Readers:
    """Consumers outside any group that read the partitions they are given; closing the
    broker stops them all (which ends its ``tail()`` loops)."""

    def __init__(self, options: KafkaOptions, what: str) -> None:
        self.options = options
        self.what = what
        self.open: set[Any] = set()

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Any]:
        reader = AIOKafkaConsumer(
            **self.options.common(), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await reader.start()
        self.open.add(reader)
        try:
            yield reader
        finally:
            self.open.discard(reader)
            await stop(reader, self.what)

    async def close(self) -> None:
        for reader in list(self.open):
            await stop(reader, self.what)
        self.open.clear()


async def tail(
    topics: Topics,
    readers: Readers,
    codec: Codec,
    queue: Queue,
    last: int,
    running: Callable[[], bool],
    key: str | None = None,
) -> AsyncIterator[bytes]:
    """The last ``last`` messages of the queue (of ``key``'s, if given), then every new one
    while ``running()``, as envelope bytes."""
    await topics.ensure(queue.name)
    partitions = await topics.partitions(topics.options.topic(queue.name))
    wanted: Callable[[Any], bool] = _is_new
    if key is not None:
        raw_key = key.encode()
        partitions = [_partition_of(raw_key, partitions)]

        def wanted(record: Any) -> bool:
            return record.key == raw_key and _is_new(record)

    starts, ends = await topics.bounds(partitions)
    async with readers.reader() as reader:
        history: list[Any] = []
        if last > 0:
            for tp in partitions:
                start, end = starts.get(tp, 0), ends.get(tp, 0)
                history += await _newest(reader, tp, start, end, last, wanted)
        for record in ordered(codec, history)[-last:] if last else ():
            if (data := reencoded(codec, record, queue)) is not None:
                yield data
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, ends.get(tp, 0))
        failures = 0
        while running():
            try:
                batch = await reader.getmany(timeout_ms=1000)
                failures = 0
            except Exception as exc:
                if not running():
                    return
                failures += 1
                log.warning("tail of %r: %s; trying again", queue.name, exc)
                await asyncio.sleep(RECONNECT.delay(failures))
                continue
            fresh = [r for records in batch.values() for r in records if wanted(r)]
            for record in ordered(codec, fresh):
                if (data := reencoded(codec, record, queue)) is not None:
                    yield data


def _partition_of(key: bytes, partitions: list[Any]) -> Any:
    """The partition a producer puts ``key`` on (murmur2, as the Java client)."""
    numbers = [tp.partition for tp in partitions]
    chosen = DefaultPartitioner()(key, numbers, numbers)
    return next(tp for tp in partitions if tp.partition == chosen)


def ordered(codec: Codec, records: list[Any]) -> list[Any]:
    """Records by record time, then by the envelope's ``sent_at``, partition and offset."""

    def when(record: Any) -> tuple[int, float, int, int]:
        try:
            sent_at = codec.decode(record.value or b"").sent_at
        except DecodeError:
            sent_at = 0.0
        return (record.timestamp, sent_at, record.partition, record.offset)

    return sorted(records, key=when)


def _is_new(record: Any) -> bool:
    """A message as sent, not a retry (which carries the group it is for)."""
    return not record.headers or header(record.headers, GROUP) is None


async def _newest(
    reader: Any, tp: Any, start: int, end: int, count: int, wanted: Callable[[Any], bool]
) -> list[Any]:
    """At least ``count`` records ``wanted`` from the end of a partition, when it has them:
    reads backwards in growing steps."""
    found: list[Any] = []
    upto, begin = end, max(start, end - count)
    while True:
        found = [r for r in await read(reader, tp, begin, upto) if wanted(r)] + found
        if len(found) >= count or begin <= start:
            return found
        step = max(2 * (count - len(found)), 2 * (upto - begin))  # doubling: keys are sparse
        upto, begin = begin, max(start, begin - step)


async def read(reader: Any, tp: Any, start: int, upto: int) -> list[Any]:
    """The records of one partition from offset ``start`` to before ``upto``."""
    if upto <= start:
        return []
    reader.assign([tp])
    reader.seek(tp, start)
    records: list[Any] = []
    idle = 0
    while await reader.position(tp) < upto and idle < 10:
        batch = await reader.getmany(tp, timeout_ms=500)
        got = batch.get(tp, [])
        idle = 0 if got else idle + 1
        records += [record for record in got if record.offset < upto]
    return records
