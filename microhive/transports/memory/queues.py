"""A queue inside one process: a FIFO of encoded messages with waiting consumers, delayed
messages, a count of those in flight, and its dead letters.

Deliveries settle through :meth:`MemoryQueue.settle`, :meth:`~MemoryQueue.again`,
:meth:`~MemoryQueue.back` and :meth:`~MemoryQueue.bury`, which keep the counts right.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from ...broker import DeadLetter
from ...envelope import Envelope
from .tail import History


def compact(data: bytes) -> bytes:
    """A right-sized copy of encoded bytes that will be kept a while.

    orjson writes into a 1 KiB buffer and shrinks it; thousands of such shrunk blocks held
    at once fragment the heap until every later dumps() costs several times more. A copy
    (tens of nanoseconds) keeps the queue's memory compact.
    """
    return bytes(memoryview(data))


class MemoryQueue:
    """A FIFO of encoded messages with waiting consumers, delayed and in-flight counts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.history = History()
        self.ready: deque[bytes] = deque()
        self.waiters: deque[asyncio.Future[bytes]] = deque()
        self.in_flight = 0
        self.delayed: set[asyncio.TimerHandle] = set()
        self.dead: list[DeadLetter] = []
        self.consumers = 0  # open consumers (MemoryConsumer counts itself in and out)

    def __len__(self) -> int:
        return len(self.ready) + self.in_flight + len(self.delayed)

    def put(self, data: bytes, *, front: bool = False) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(data)
                self.in_flight += 1  # handed over: counted from now, not when the taker runs
                return
        if front:
            self.ready.appendleft(data)
        else:
            self.ready.append(data)

    def put_later(self, data: bytes, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.delayed.discard(handle)
            self.put(data)

        handle = loop.call_later(delay, fire)
        self.delayed.add(handle)

    def take_now(self, limit: int) -> list[bytes]:
        """Up to ``limit`` waiting messages without waiting, counted in flight."""
        ready = self.ready
        count = min(limit, len(ready))
        self.in_flight += count
        return [ready.popleft() for _ in range(count)]

    async def get(self, waiting: set[asyncio.Future[bytes]]) -> bytes:
        """The next message, counted in flight; ``waiting`` lets a consumer close the wait."""
        if self.ready:
            self.in_flight += 1
            return self.ready.popleft()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        waiting.add(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # handed a message just as we were cancelled: give it back, first in line
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.in_flight -= 1
                self.put(waiter.result(), front=True)
            raise
        finally:
            waiting.discard(waiter)
            if not waiter.done():
                waiter.cancel()

    # -- settling ---------------------------------------------------------------------------

    def settle(self) -> None:
        """A message in flight was processed: it is gone."""
        self.in_flight -= 1

    def again(self, data: bytes, delay: float) -> None:
        """A message in flight comes back as ``data`` (its next attempt) after ``delay``."""
        self.in_flight -= 1
        if delay > 0:
            self.put_later(data, delay)
        else:
            self.put(data)

    def back(self, data: bytes) -> None:
        """A message in flight is given back unprocessed: first in line."""
        self.in_flight -= 1
        self.put(data, front=True)

    def bury(self, reason: str, data: bytes, envelope: Envelope | None) -> DeadLetter:
        """A message in flight is parked with ``reason``."""
        letter = DeadLetter(
            queue=self.name,
            reason=reason,
            raw=data,
            envelope=envelope,
            attempt=envelope.attempt if envelope else 1,
            dead_at=time.time(),
        )
        self.dead.append(letter)
        self.in_flight -= 1
        return letter
