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

Nothing a handler raises ends a worker: only the agent's own shutdown cancels them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from ..broker import Consumer, Delivery
from ..errors import ConsumerClosed
from ..retry import RECONNECT
from .dispatch import cancelled_from_outside, describe, failure

log = logging.getLogger("microhive.agent")

SLICE = 0.002
"""A receiver worker that has run handlers this long (seconds) without waiting lets the event loop
run other tasks: fair to timers and other agents, yet no loop turn per few messages."""

CHECK_EVERY = 16
"""How many signals a receiver worker runs between two looks at the clock."""

TURN = 16
"""A consumer worker lets the others (of this agent and of other agents on the same loop)
take the next deliveries after this many in a row: competing consumers share a queue even
when their handlers never wait."""


class ReceiverPool:
    """An inbox of (handler, envelope) items and the workers that run them."""

    def __init__(
        self,
        start: Callable[[Any, Any], Awaitable[None] | None],
        spawn: Callable[[Any], asyncio.Task[Any]],
        limit: int = 1024,
    ) -> None:
        self.start = start
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
        since = monotonic()
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
                since = monotonic()
                continue
            handler, envelope = inbox.popleft()
            rest = self.start(handler, envelope)
            if rest is not None:
                self.in_handler += 1
                try:
                    await rest
                except BaseException as exc:  # the receiver's own path reports failures
                    if cancelled_from_outside(exc):
                        raise
                    log.error("receiver worker: %s escaped; worker goes on", describe(exc))
                finally:
                    self.in_handler -= 1
            done += 1
            if done % CHECK_EVERY == 0 and monotonic() - since >= SLICE:
                await asyncio.sleep(0)
                since = monotonic()

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
    process: Callable[[Any], Awaitable[None]],
    on_error: Callable[[Exception], None],
    spawn: Callable[[Any], asyncio.Task[Any]],
    batch: int = 0,
    batch_timeout: float = 0.0,
) -> list[asyncio.Task[Any]]:
    """Start ``concurrency`` workers taking deliveries from ``consumer`` until it closes:
    one at a time, or (``batch``) lists of up to that many for a batch handler."""

    def take() -> Awaitable[Delivery | list[Delivery]]:
        return consumer.get_batch(batch, batch_timeout) if batch else consumer.get()

    async def work() -> None:
        done = failures = 0
        while True:
            try:
                taken = await take()
            except ConsumerClosed:
                return
            except Exception as exc:  # the transport reconnects by itself; don't spin
                on_error(exc)
                failures += 1
                await asyncio.sleep(RECONNECT.delay(failures))
                continue
            try:
                await process(taken)
            except BaseException as exc:  # the engine failed while settling, or under a task
                if cancelled_from_outside(exc):
                    raise
                on_error(failure(exc))
                await give_back(taken, on_error)  # then a pause: it is not spun on at full speed
                failures += 1
                await asyncio.sleep(RECONNECT.delay(failures))
                continue
            failures = 0
            done += 1
            if done % TURN == 0:
                await asyncio.sleep(0)

    return [spawn(work()) for _ in range(concurrency)]


async def give_back(
    taken: Delivery | list[Delivery], on_error: Callable[[Exception], None]
) -> None:
    """Release what a failed run left unsettled: it is delivered again (at once, or after
    ``claim_idle`` / ``ack_wait`` where the engine is down), not held by this process until
    it ends. Whatever ran of it runs again: a task's record and its workflow's next steps
    are idempotent (docs/tasks.md, Guarantees)."""
    for delivery in taken if isinstance(taken, list) else [taken]:
        if delivery.settled:
            continue
        try:
            await asyncio.shield(delivery.release())
        except Exception as exc:
            on_error(failure(exc))
