"""Keyed replay: where the last N messages of one key begin in a queue's stream.

Keyed sends keep the queue's subject (plain subscribers and existing streams see them as
before) and carry the key in the NATS header ``x-key`` too. ``tail(last=N, key=K)`` scans
the retained history once with a headers-only ordered consumer (no bodies travel), keeps
the sequences of the last N messages whose ``x-key`` is K, and replays from the first of
them; the messages of other keys in between are filtered out by the broker. A plain client
that sets the header ``x-key`` is found the same way.
"""

from __future__ import annotations

from collections import deque

from .jetstream import JetStream
from .places import Place
from .tail import Follower
from .wire import KEY


async def start(jetstream: JetStream, place: Place, key: str, last: int) -> int:
    """The stream sequence to replay from (after the end when no message has the key)."""
    state = await jetstream.stream_state(place.stream)
    first, newest = int(state.get("first_seq", 1)) or 1, int(state.get("last_seq", 0))
    after = newest + 1
    if last == 0 or newest == 0:
        return after
    scanner = Follower(jetstream, place, headers_only=True)
    found: deque[int] = deque(maxlen=last)
    try:
        if await scanner.count(first) == 0:
            return after
        async for item in scanner.follow(0, first):
            sequence = scanner.start - 1
            if item.headers and item.headers.get(KEY) == key:
                found.append(sequence)
            if sequence >= newest or _pending(item.reply) == 0:
                break
    finally:
        await scanner.stop()
    return found[0] if found else after


def _pending(reply: bytes) -> int | None:
    """How many messages the consumer had left after this one (from the ack subject)."""
    parts = reply.split(b".")
    offset = 0 if len(parts) == 9 else 2
    try:
        return int(parts[8 + offset])
    except (IndexError, ValueError):
        return None
