"""Dead letters: the records of a queue's dead-letter topic, read back, requeued, purged.

A dead letter is the message's original bytes, key and headers on ``<prefix>.dead.<name>``
with the reason, attempt, queue, group and time in record headers (:mod:`.wire`), so any
Kafka tool can read them too.

A topic cannot delete records, so "requeued or purged" is kept beside it:

- the **done position**: the offsets committed on each partition of the dead-letter topic
  by a consumer group of its own (``<prefix>.dead.<name>``); everything below it is done;
- **done records** on the dead-letter topic itself: a record without value whose header
  ``microhive-done`` lists offsets of that partition (``"5,7-9"``) that are done although
  letters below them are not (a purge by reason, say). They are not dead letters.

An operation takes the chosen letters in chunks: it publishes a chunk (a requeue), awaits
the acknowledgements, then writes the chunk's done record, then moves the done position up
to the first letter still alive. A crash in between leaves a chunk requeued and still
listed (requeued again next time: a duplicate), never a letter lost. Two operations on one
queue at the same time may both take a letter (duplicates, again).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata

from ...broker import DeadLetter
from ...codecs import Codec
from ...deadletters import Selection, requeued
from ...declarations import Queue
from ...errors import TransportError
from .offsets import stop
from .plain import MARKED, outgoing, received
from .tail import Readers, read
from .topics import Topics
from .wire import ATTEMPT, CONTROL, DEAD_AT, REASON, header

DONE = "microhive-done"
"""On a done record of the dead-letter topic: the offsets of its partition that are done."""
CHUNK = 500
"""Letters published (or dropped) between two moves of the done position."""

Send = Callable[[str, bytes, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]


@dataclass(slots=True)
class Letter:
    tp: Any
    offset: int
    record: Any
    letter: DeadLetter


@dataclass(slots=True)
class Scan:
    """A dead-letter topic read from its done position: the letters alive, oldest first."""

    letters: list[Letter] = field(default_factory=list)
    positions: dict[Any, int] = field(default_factory=dict)  # the done position per partition
    ends: dict[Any, int] = field(default_factory=dict)


class DeadLetters:
    """A broker's dead-letter work on its queues' dead-letter topics."""

    def __init__(
        self, topics: Topics, readers: Readers, codec: Codec, declaration: Callable[[str], Queue]
    ) -> None:
        self.topics = topics
        self.readers = readers
        self.codec = codec
        self.declaration = declaration
        self.options = topics.options
        self.locks: dict[str, asyncio.Lock] = {}
        self.chunk = CHUNK

    async def oldest(self, queue: str, limit: int) -> list[DeadLetter]:
        """The first ``limit`` dead letters of ``queue`` alive, oldest first."""
        scan = await self._scan(queue)
        return [entry.letter for entry in scan.letters[:limit]]

    async def count(self, queue: str) -> int:
        """How many dead letters of ``queue`` are alive (reads the topic from its done
        position: a topic has no count of what is not done)."""
        return len((await self._scan(queue)).letters)

    async def requeue(self, queue: str, to: str, selection: Selection, send: Send) -> int:
        """Publish the chosen letters to ``to`` (through ``send``), then mark them done."""
        await self.topics.ensure(to)
        target = self.declaration(to)

        async def publish(chunk: list[Letter]) -> None:
            records = [self._record(entry, target) for entry in chunk]
            await asyncio.gather(*(send(to, value, key, marks) for value, key, marks in records))

        return await self._work(queue, selection, publish)

    async def purge(self, queue: str, selection: Selection) -> int:
        return await self._work(queue, selection, None)

    async def _work(
        self,
        queue: str,
        selection: Selection,
        publish: Callable[[list[Letter]], Awaitable[None]] | None,
    ) -> int:
        lock = self.locks.setdefault(queue, asyncio.Lock())
        async with lock:
            scan = await self._scan(queue)
            by_letter = {id(entry.letter): entry for entry in scan.letters}
            chosen = [by_letter[id(x)] for x in selection.choose([e.letter for e in scan.letters])]
            alive = {id(entry) for entry in scan.letters}
            lines: dict[Any, deque[Letter]] = {tp: deque() for tp in scan.positions}
            for entry in sorted(scan.letters, key=lambda e: e.offset):
                lines[entry.tp].append(entry)  # each partition's letters by offset
            size = self.chunk
            for start in range(0, len(chosen), size):
                chunk = chosen[start : start + size]
                if publish is not None:
                    await publish(chunk)  # acknowledged before anything is marked done
                for entry in chunk:
                    alive.discard(id(entry))
                await self._mark_done(queue, scan, chunk, alive, lines)
            return len(chosen)

    def _record(self, entry: Letter, target: Queue) -> tuple[bytes, bytes | None, Any]:
        """What a requeue publishes for one letter: the message as a first attempt (marked),
        or the bytes that never decoded with the record's own headers."""
        letter, record = entry.letter, entry.record
        if letter.envelope is None:
            kept = [(k, v) for k, v in record.headers or () if k not in CONTROL]
            return letter.raw, record.key, kept
        data = requeued(self.codec, letter, target.name)
        if target.payload == "json":
            return data, record.key, MARKED
        envelope = self.codec.decode(data)
        value, marks = outgoing(target, envelope, b"")
        return value, record.key, marks

    async def _mark_done(
        self,
        queue: str,
        scan: Scan,
        chunk: list[Letter],
        alive: set[int],
        lines: dict[Any, deque[Letter]],
    ) -> None:
        """Write the chunk's done records, then move each partition's done position up to
        its first letter alive — or to the end the scan saw, when none is left: a letter
        that died since then lies beyond it (the done records there are read again,
        harmlessly)."""
        topic = self.options.dead_topic(queue)
        producer = self.topics.link.producer
        by_partition: dict[Any, list[int]] = {}
        for entry in chunk:
            by_partition.setdefault(entry.tp, []).append(entry.offset)
        for tp, offsets in by_partition.items():
            try:
                sent = await producer.send_and_wait(
                    topic, b"", partition=tp.partition, headers=[(DONE, _ranges(offsets).encode())]
                )
            except Exception as exc:
                raise TransportError(f"{queue!r}: cannot mark dead letters done: {exc}") from None
            if sent is None:
                raise TransportError(f"{queue!r}: marking dead letters done was not acknowledged")
        moved: dict[Any, int] = {}
        for tp, line in lines.items():
            while line and id(line[0]) not in alive:
                line.popleft()
            first = line[0].offset if line else scan.ends.get(tp, 0)
            if first > scan.positions[tp]:
                moved[tp] = scan.positions[tp] = first
        if moved:
            await self._commit(queue, moved)

    async def _commit(self, queue: str, positions: dict[Any, int]) -> None:
        client = AIOKafkaConsumer(
            **self.options.common(),
            group_id=self.options.done_group(queue),
            enable_auto_commit=False,
        )
        try:
            await client.start()
            client.assign(list(positions))
            await client.commit({tp: OffsetAndMetadata(at, "") for tp, at in positions.items()})
        except Exception as exc:
            raise TransportError(
                f"{queue!r}: cannot move the dead letters' position: {exc}"
            ) from None
        finally:
            await stop(client, repr(self))

    async def _scan(self, queue: str) -> Scan:
        topics = self.topics
        await topics.ensure(queue)
        partitions = await topics.partitions(self.options.dead_topic(queue))
        starts, ends = await topics.bounds(partitions)
        committed = await topics.link.admin.list_consumer_group_offsets(
            self.options.done_group(queue), partitions=partitions
        )
        scan = Scan(ends=dict(ends))
        declaration = self.declaration(queue)
        async with self.readers.reader() as reader:
            for tp in partitions:
                done = committed.get(tp)
                position = max(starts.get(tp, 0), done.offset if done is not None else 0)
                scan.positions[tp] = position
                records = await read(reader, tp, position, ends.get(tp, 0))
                gone: set[int] = set()
                for record in records:
                    if record.headers and (marks := header(record.headers, DONE)) is not None:
                        gone.update(_offsets(marks, position, record.offset))
                for record in records:
                    if record.offset in gone or header(record.headers or (), DONE) is not None:
                        continue
                    letter = _dead_letter(self.codec, declaration, record)
                    scan.letters.append(Letter(tp, record.offset, record, letter))
        scan.letters.sort(key=lambda e: (e.letter.dead_at, e.tp.partition, e.offset))
        return scan


def _dead_letter(codec: Codec, queue: Queue, record: Any) -> DeadLetter:
    envelope, _ = received(codec, record, queue)
    headers = record.headers or ()
    return DeadLetter(
        queue=queue.name,
        reason=header(headers, REASON) or "",
        raw=record.value or b"",
        envelope=envelope,
        attempt=_number(header(headers, ATTEMPT), 1, int),
        dead_at=_number(header(headers, DEAD_AT), record.timestamp / 1000, float),
    )


def _number(text: str | None, default: Any, kind: Any) -> Any:
    try:
        return kind(text) if text is not None else default
    except ValueError:
        return default


def _ranges(offsets: list[int]) -> str:
    """``[5, 7, 8, 9]`` as ``"5,7-9"``."""
    parts: list[str] = []
    ordered = sorted(set(offsets))
    begin = previous = ordered[0]
    for offset in [*ordered[1:], None]:
        if offset is not None and offset == previous + 1:
            previous = offset
            continue
        parts.append(str(begin) if begin == previous else f"{begin}-{previous}")
        if offset is not None:
            begin = previous = offset
    return ",".join(parts)


def _offsets(text: str, lowest: int, below: int) -> set[int]:
    """The offsets of a ``microhive-done`` header between ``lowest`` and ``below`` (what
    lies outside cannot be a letter it marks; parts that are not ranges are ignored)."""
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        if (
            len(part) <= 41
            and low.isascii()
            and low.isdigit()
            and (not high or (high.isascii() and high.isdigit()))
        ):
            first, last = max(lowest, int(low)), min(below - 1, int(high or low))
            found.update(range(first, last + 1))
    return found
