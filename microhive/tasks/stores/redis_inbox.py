"""Wake-ups for the jobs a process submitted itself, on one channel of its own.

A caller that submits a job and waits for its result is the common case; subscribing to
the job's own channel for it costs a ``SUBSCRIBE`` and an ``UNSUBSCRIBE`` per job. Instead
each store subscribes once to an *inbox* channel and writes its name into the records it
creates for jobs it will wait for (``meta["notify"]``); the final transition publishes
there too, in the same Lua step as on the job's channel. The inbox keeps what arrived for a
job nobody waits for yet (the newest 10,000, at most 16 MB), so ``result()`` called after the
job finished costs nothing.

The one gap is a lost connection: whatever was published meanwhile is gone, so a loss
forgets every expectation and wakes every waiter with ``RECHECK``; those jobs fall back to
the job-channel path (read the record, subscribe), which closes the gap by itself.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Final

import msgspec

ARRIVED_BYTES: Final = 16 * 1024 * 1024
"""Bytes of records kept for jobs nobody waits for yet (results may be large: the oldest go
first; a wait for one of them reads the store)."""

NOTIFY: Final = "notify"
"""The record's ``meta`` key naming the channel its final value is also published on."""


class _Id(msgspec.Struct):
    id: str


_ids = msgspec.json.Decoder(_Id)


class Inbox:
    """Final records of jobs this process expects, delivered on ``channel``."""

    def __init__(self, channel: bytes, limit: int, recheck: bytes) -> None:
        self.channel = channel
        self.name = channel.decode()
        self.ready = asyncio.Event()  # set while the subscription is confirmed
        self.generation = 0  # connections lost so far: an expectation must not span one
        self._limit = limit
        self._recheck = recheck
        self._expected: OrderedDict[str, None] = OrderedDict()
        self._arrived: OrderedDict[str, bytes] = OrderedDict()
        self._arrived_bytes = 0
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = {}

    def expect(self, job_id: str, generation: int) -> None:
        """``job_id``'s record names this inbox and was written while it was subscribed
        (with no loss since ``generation`` was read, before the write)."""
        if generation != self.generation or not self.ready.is_set():
            return
        self._expected[job_id] = None
        if len(self._expected) > self._limit:  # never awaited: the job channel serves it
            self._expected.popitem(last=False)

    def expects(self, job_id: str) -> bool:
        return job_id in self._expected or job_id in self._arrived

    def arrived(self, job_id: str) -> bytes | None:
        """The final record if it is here already (taken: a second wait reads the store)."""
        data = self._arrived.pop(job_id, None)
        if data is not None:
            self._arrived_bytes -= len(data)
        return data

    async def take(self, job_id: str) -> bytes:
        """The final record once it arrives, or ``RECHECK`` after a lost connection."""
        data = self.arrived(job_id)
        if data is not None:
            return data
        if job_id not in self._expected:
            return self._recheck
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting = self._waiters.setdefault(job_id, [])
        waiting.append(future)
        try:
            return await future
        finally:
            waiting.remove(future)
            if not waiting:
                del self._waiters[job_id]

    def deliver(self, data: bytes) -> None:
        try:
            job_id = _ids.decode(data).id
        except msgspec.DecodeError:
            return  # not a record: nothing of ours
        self._expected.pop(job_id, None)
        waiting = self._waiters.get(job_id)
        if waiting:
            for future in waiting:
                if not future.done():
                    future.set_result(data)
            return
        self.arrived(job_id)  # delivered twice (a retried write): keep the count right
        self._arrived[job_id] = data
        self._arrived_bytes += len(data)
        while len(self._arrived) > self._limit or self._arrived_bytes > ARRIVED_BYTES:
            _, dropped = self._arrived.popitem(last=False)
            self._arrived_bytes -= len(dropped)

    def subscribed(self) -> None:
        self.ready.set()

    def lost(self) -> None:
        """Publications may have been missed: nothing expected is sure to arrive any more."""
        self.ready.clear()
        self.generation += 1
        self._expected.clear()
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_result(self._recheck)
