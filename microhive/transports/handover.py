"""Handing received deliveries to a consumer's workers: the buffer and the waiting workers.

Every networked consumer reads ahead (a fetch, a pull, a prefetch window) and its workers
take one delivery at a time with ``Consumer.get()``. This is that meeting point, written once:
a delivery goes to the worker that has waited longest, else to the buffer; a worker cancelled
just as it was handed one puts it back first in line, so nothing read is lost between the
engine and a handler.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handover(Generic[T]):
    """Deliveries received and not yet taken, and the workers waiting in ``take()``."""

    __slots__ = ("buffer", "waiters")

    def __init__(self) -> None:
        self.buffer: deque[T] = deque()
        self.waiters: deque[asyncio.Future[T]] = deque()

    def __len__(self) -> int:
        """How many deliveries wait in the buffer (none while workers wait)."""
        return len(self.buffer)

    def give(self, item: T) -> None:
        """To the longest-waiting worker, else to the back of the buffer."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self.buffer.append(item)

    def give_all(self, items: Iterable[T], *, front: bool = False) -> None:
        """Several, in order: to waiting workers first; the rest to the back of the buffer, or
        (``front``) ahead of what is buffered, as redelivered messages go first."""
        rest = list(items)
        waiters = self.waiters
        given = 0
        while given < len(rest) and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(rest[given])
                given += 1
        if front:
            self.buffer.extendleft(reversed(rest[given:]))
        else:
            self.buffer.extend(rest[given:])

    async def take(self) -> T:
        """The next delivery, waiting for one if none is buffered."""
        if self.buffer:
            return self.buffer.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.buffer.appendleft(waiter.result())  # handed over as we were cancelled
            raise
        finally:
            if not waiter.done():
                waiter.cancel()  # give() skips it

    def fail(self, error: BaseException) -> None:
        """Every waiting worker gets ``error`` (the consumer closed)."""
        waiters, self.waiters = self.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def clear(self) -> list[T]:
        """Empty the buffer; returns what was in it, oldest first."""
        items = list(self.buffer)
        self.buffer.clear()
        return items
