"""Handing received deliveries to a consumer's workers: the buffer and the waiting workers.

Every networked consumer reads ahead (a fetch, a pull, a prefetch window) and its workers
take one delivery at a time with ``Consumer.get()``. This is that meeting point, written once:
deliveries line up in a buffer and go to the worker that has waited longest; a worker
cancelled just as it was handed one puts it back first in line, so nothing read is lost
between the engine and a handler.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handover(Generic[T]):
    """Deliveries received and not yet taken, and the workers waiting in ``take()``.

    At most one waiting worker is woken at a time: it takes one delivery and wakes the next
    only if more are buffered. Waking a task costs more than most handlers, so a worker whose
    handlers never wait runs a whole batch by itself (taking turns with the others every few
    deliveries), while handlers that do wait still bring every worker in, one after another.
    """

    __slots__ = ("buffer", "pending", "waiters")

    def __init__(self) -> None:
        self.buffer: deque[T] = deque()
        self.waiters: deque[asyncio.Future[T]] = deque()
        self.pending = 0  # handed to a woken worker that has not run yet

    def __len__(self) -> int:
        """How many deliveries wait in the buffer."""
        return len(self.buffer)

    def give(self, item: T) -> None:
        """To the back of the line; a waiting worker is woken if none is on its way."""
        self.buffer.append(item)
        self._wake()

    def give_all(self, items: Iterable[T], *, front: bool = False) -> None:
        """Several, in order: to the back of the line, or (``front``) ahead of it, as
        redelivered messages go first."""
        if front:
            self.buffer.extendleft(reversed(list(items)))
        else:
            self.buffer.extend(items)
        self._wake()

    def _wake(self) -> None:
        if self.pending or not self.buffer:
            return
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self.buffer.popleft())
                self.pending += 1
                return

    async def take(self) -> T:
        """The next delivery, waiting for one if none is buffered."""
        if self.buffer:
            item = self.buffer.popleft()
            self._wake()
            return item
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            item = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.pending -= 1
                self.buffer.appendleft(waiter.result())  # handed over as we were cancelled
                self._wake()
            raise
        finally:
            if not waiter.done():
                waiter.cancel()  # _wake() skips it
        self.pending -= 1
        self._wake()
        return item

    def take_now(self, limit: int) -> list[T]:
        """Up to ``limit`` buffered deliveries without waiting: what fills a batch at once."""
        buffer = self.buffer
        count = min(limit, len(buffer))
        return [buffer.popleft() for _ in range(count)]

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
