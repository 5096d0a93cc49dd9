"""A queue's dead letters: listing them, sending chosen ones back, purging them.

They are entries of the stream ``<queue>:dead`` (:mod:`.settler` writes them). A requeue
runs the Lua script ``REQUEUE_DEAD`` per batch: for each chosen letter still there, ``XADD``
to the target stream, then ``XDEL`` from the dead letters, in one atomic step — a crash
(of the process or of Redis) leaves each batch done or not done, and a reply lost on the way
(the batch is sent again) duplicates at most that batch, never loses a letter. A letter
another process requeued or purged meanwhile is skipped, not duplicated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from ...broker import DeadLetter
from ...codecs import Codec
from ...deadletters import Selection, requeued
from ...declarations import Queue
from .commands import Commands
from .entries import decode, marked, original
from .scripts import REQUEUE_DEAD
from .wire import DATA, QueueKeys, as_float, as_int

PAGE = 500
"""Dead letters read per XRANGE, and moved per script run."""


def letter_of(codec: Codec, queue: Queue, flat: list[bytes]) -> DeadLetter:
    """One dead-letter entry as a :class:`DeadLetter`, its envelope made as the consumer did."""
    found = dict(zip(flat[::2], flat[1::2], strict=False))
    raw, envelope, _ = decode(codec, found.get(b"entry", b"0-0"), original(found), queue)
    return DeadLetter(
        queue=queue.name,
        reason=found.get(b"reason", b"").decode(errors="replace"),
        raw=raw,
        envelope=envelope,
        attempt=as_int(found.get(b"attempt"), 1),
        dead_at=as_float(found.get(b"dead_at"), 0.0),
    )


async def letters(
    commands: Commands, codec: Codec, queue: Queue, dead: str, limit: int | None = None
) -> AsyncIterator[tuple[bytes, DeadLetter]]:
    """The dead letters of ``queue``, oldest first, with their entry ids; pages of XRANGE."""
    start = b"-"
    left = limit
    while left is None or left > 0:
        count = PAGE if left is None else min(PAGE, left)
        page = await commands.run(b"XRANGE", dead, start, b"+", b"COUNT", count)
        for entry_id, flat in page:
            yield entry_id, letter_of(codec, queue, flat)
        if len(page) < count:
            return
        if left is not None:
            left -= len(page)
        start = b"(" + page[-1][0]


async def chosen(
    commands: Commands, codec: Codec, queue: Queue, dead: str, selection: Selection
) -> AsyncIterator[list[tuple[bytes, DeadLetter]]]:
    """The letters ``selection`` takes, in batches of at most :data:`PAGE`."""
    batch: list[tuple[bytes, DeadLetter]] = []
    taken = 0
    if selection.limit == 0:
        return
    async for entry_id, letter in letters(commands, codec, queue, dead):
        if not selection.matches(letter):
            continue
        batch.append((entry_id, letter))
        taken += 1
        if len(batch) >= PAGE:
            yield batch
            batch = []
        if selection.limit is not None and taken >= selection.limit:
            break
    if batch:
        yield batch


async def requeue(
    commands: Commands,
    codec: Codec,
    source: tuple[Queue, QueueKeys],
    target: tuple[Queue, QueueKeys],
    selection: Selection,
) -> int:
    """Publish the chosen letters to the target stream, then remove them; returns how many."""
    (queue, keys), (to, to_keys) = source, target
    moved = 0
    async for batch in chosen(commands, codec, queue, keys.dead, selection):
        args: list[Any] = [commands.options.maxlen]
        for entry_id, letter in batch:
            fields = _fields(codec, letter, to)
            args += [entry_id, len(fields), *fields]
        moved += int(await commands.script(REQUEUE_DEAD, (to_keys.stream, keys.dead), tuple(args)))
    return moved


async def purge(
    commands: Commands, codec: Codec, queue: Queue, dead: str, selection: Selection
) -> int:
    """Delete the chosen letters; returns how many."""
    removed = 0
    async for batch in chosen(commands, codec, queue, dead, selection):
        removed += int(await commands.run(b"XDEL", dead, *(entry_id for entry_id, _ in batch)))
    return removed


def _fields(codec: Codec, letter: DeadLetter, to: Queue) -> list[Any]:
    """The entry a requeue adds for ``letter`` to queue ``to``: its first attempt again."""
    envelope = letter.envelope
    if envelope is None:  # never decoded: its bytes as they came
        return [DATA, letter.raw]
    if to.payload == "json" and not isinstance(envelope.payload, bytes):
        return [DATA, requeued(codec, letter, to.name)]
    # a text or bytes message: requeued() makes its envelope again, its payload is kept
    bare = replace(letter, envelope=replace(envelope, payload=None))
    again = codec.decode(requeued(codec, bare, to.name))
    again.payload = envelope.payload
    return marked(codec, again)
