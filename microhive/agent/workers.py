"""Worker tasks: how an agent runs its receivers and consumers without a task per message.

Creating an asyncio task costs more than the rest of dispatching a message together, so
messages are handed to long-lived workers that run handlers one after another (a handler
that finishes without waiting costs no task and no loop iteration at all). Every handler
still runs in a real task of its own at the time, so ``asyncio.timeout``, ``TaskGroup`` and
``current_task()`` inside handlers behave as usual.

- :class:`ReceiverPool`: signals and calls go to an inbox; one worker drains it while
  handlers return quickly, and a new worker starts whenever every worker waits inside a
  handler — so a slow receiver, or a call answered by the same agent, never holds up the
  rest. Idle workers beyond one exit.
- :func:`consumer_workers`: ``concurrency`` workers per consumer, each taking the next
  delivery once its handler finished: bounded concurrency that is also backpressure.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..broker import Consumer, Delivery
from ..errors import ConsumerClosed

FAIRNESS = 16
"""A worker lets the event loop run other tasks after this many messages in a row."""


class ReceiverPool:
    """An inbox of (handler, envelope) items and the workers that run them."""

    def __init__(
        self,
        run: Callable[[Any, Any], Awaitable[None]],
        spawn: Callable[[Any], asyncio.Task[Any]],
        limit: int = 1024,
    ) -> None:
        self.run = run
        self.spawn = spawn
        self.limit = limit
        self.inbox: deque[tuple[Any, Any]] = deque()
        self.workers: set[asyncio.Task[None]] = set()
        self.idle: deque[asyncio.Future[None]] = deque()
        self.in_handler = 0
        self.closing = False

    def put(self, handler: Any, envelope: Any) -> None:
        self.inbox.append((handler, envelope))
        if self.idle:
            waker = self.idle.popleft()
            if not waker.done():
                waker.set_result(None)
        elif self.in_handler >= len(self.workers) and len(self.workers) < self.limit:
            task = self.spawn(self._work())
            self.workers.add(task)
            task.add_done_callback(self.workers.discard)

    async def _work(self) -> None:
        inbox = self.inbox
        done = 0
        while True:
            if not inbox:
                if self.closing or self.idle:
                    return
                waker = asyncio.get_running_loop().create_future()
                self.idle.append(waker)
                try:
                    await waker
                finally:
                    if waker in self.idle:
                        self.idle.remove(waker)
                continue
            handler, envelope = inbox.popleft()
            self.in_handler += 1
            try:
                await self.run(handler, envelope)
            finally:
                self.in_handler -= 1
            done += 1
            if done % FAIRNESS == 0:
                await asyncio.sleep(0)

    def close(self) -> None:
        """Take no more signals; workers finish the inbox, then exit."""
        self.closing = True
        while self.idle:
            waker = self.idle.popleft()
            if not waker.done():
                waker.set_result(None)


def consumer_workers(
    consumer: Consumer,
    concurrency: int,
    process: Callable[[Delivery], Awaitable[None]],
    on_error: Callable[[Exception], None],
    spawn: Callable[[Any], asyncio.Task[Any]],
) -> list[asyncio.Task[Any]]:
    """Start ``concurrency`` workers taking deliveries from ``consumer`` until it closes."""

    async def work() -> None:
        done = 0
        while True:
            try:
                delivery = await consumer.get()
            except ConsumerClosed:
                return
            except Exception as exc:  # the transport reconnects by itself; don't spin
                on_error(exc)
                await asyncio.sleep(1)
                continue
            await process(delivery)
            done += 1
            if done % FAIRNESS == 0:
                await asyncio.sleep(0)

    return [spawn(work()) for _ in range(concurrency)]
