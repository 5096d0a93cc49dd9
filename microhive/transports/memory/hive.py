"""A hive is one in-process world: who listens to which signal, and the queues.

Buses and brokers made from the same ``memory://name`` URL on the same event loop meet in
the same hive. The lookup table is keyed weakly by the event loop, so a hive lives exactly
as long as its loop: each test (one loop each) starts with empty hives. This is the one
place microhive keeps module-level state, and only because an in-process rendezvous needs it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...broker import DeadLetter
from ...envelope import Envelope

if TYPE_CHECKING:
    from .bus import MemoryBus
    from .routing import MemoryExchange

_HIVES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Hive]] = (
    weakref.WeakKeyDictionary()
)


def hive_name(url: str) -> str:
    parts = urlsplit(url)
    return (parts.netloc + parts.path).strip("/")


def hive_for(url: str) -> Hive:
    """The hive that ``url`` names on the running event loop."""
    hives = _HIVES.setdefault(asyncio.get_running_loop(), {})
    name = hive_name(url)
    hive = hives.get(name)
    if hive is None:
        hive = hives[name] = Hive(name)
    return hive


class MemoryQueue:
    """A FIFO of encoded messages with waiting consumers, delayed and in-flight counts."""

    def __init__(self, name: str, history: int = 10_000) -> None:
        self.name = name
        self.history: deque[bytes] = deque(maxlen=history)
        self.followers: set[asyncio.Queue[bytes | None]] = set()
        self.ready: deque[bytes] = deque()
        self.waiters: deque[asyncio.Future[bytes]] = deque()
        self.in_flight = 0
        self.delayed: set[asyncio.TimerHandle] = set()
        self.dead: list[DeadLetter] = []

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

    def record(self, data: bytes) -> None:
        """Keep a newly sent message for replay and show it to every follower."""
        self.history.append(data)
        for follower in self.followers:
            follower.put_nowait(data)

    def put_later(self, data: bytes, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.delayed.discard(handle)
            self.put(data)

        handle = loop.call_later(delay, fire)
        self.delayed.add(handle)

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

    def dead_letter(self, reason: str, data: bytes, envelope: Envelope | None) -> DeadLetter:
        letter = DeadLetter(
            queue=self.name,
            reason=reason,
            raw=data,
            envelope=envelope,
            attempt=envelope.attempt if envelope else 1,
            dead_at=time.time(),
        )
        self.dead.append(letter)
        return letter


class Hive:
    """Signal listeners, reply inboxes, queues and exchanges of one in-process world."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.listeners: dict[str, set[MemoryBus]] = {}
        self.inboxes: dict[str, MemoryBus] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self.exchanges: dict[str, MemoryExchange] = {}

    def queue(self, name: str) -> MemoryQueue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = MemoryQueue(name)
        return queue

    def __repr__(self) -> str:
        return f"<Hive {self.name!r}>"
