"""Dead letters: the records of a queue's dead-letter topic, read back with their reason.

A dead letter is the message's original bytes and key on ``<prefix>.dead.<name>`` with the
reason, attempt, queue, group and time in record headers (:mod:`.wire`), so any Kafka tool
can read them too.
"""

from __future__ import annotations

from typing import Any

from ...broker import DeadLetter
from ...codecs import Codec
from ...envelope import Envelope
from ...errors import DecodeError
from .tail import Readers, read
from .topics import Topics
from .wire import ATTEMPT, DEAD_AT, REASON, header


async def dead_letters(
    topics: Topics, readers: Readers, codec: Codec, queue: str, limit: int
) -> list[DeadLetter]:
    """The first ``limit`` dead letters of ``queue``, oldest first."""
    await topics.ensure(queue)
    partitions = await topics.partitions(topics.options.dead_topic(queue))
    starts, ends = await topics.bounds(partitions)
    records: list[Any] = []
    async with readers.reader() as reader:
        for tp in partitions:
            start = starts.get(tp, 0)
            records += await read(reader, tp, start, min(ends.get(tp, 0), start + limit))
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    return [_dead_letter(codec, queue, record) for record in records[:limit]]


def _dead_letter(codec: Codec, queue: str, record: Any) -> DeadLetter:
    raw = record.value or b""
    try:
        envelope: Envelope | None = codec.decode(raw)
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


def _number(text: str | None, default: Any, kind: Any) -> Any:
    try:
        return kind(text) if text is not None else default
    except ValueError:
        return default
