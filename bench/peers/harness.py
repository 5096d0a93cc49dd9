"""What every side process of the peer benchmark shares (standard library only).

A side is one process playing one role of one cell: ``consumer`` (the queue's consumer, the
signals' receiver or the calls' responder, started first) or ``producer`` (the sender or the
caller, started once the consumer printed ``READY``). Each prints one ``RESULT {json}`` line;
``run.py`` computes the figures from them. Every side is run as

    python side_<peer>.py ROLE ENGINE WORK SETTING TOKEN COUNT

and must only touch names that contain TOKEN (so that ``cleanup.py`` finds them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

URLS = {
    "redis": os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "amqp": os.environ.get("PEERS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("PEERS_NATS_URL", "nats://127.0.0.1:4222"),
}
IN_FLIGHT = 64  # concurrent sends of an asyncio producer (under redis-py's default pool, 100)
CALL_WARMUP = 200
QUIET = 3.0  # seconds without a new signal after which a receiver reports what it got
_OUT = sys.stdout  # kept: Celery's worker replaces sys.stdout with a logger


def payload(i: int) -> dict[str, Any]:
    """The message: 119 bytes of compact JSON for a 5-digit i (what the project's baselines use)."""
    return {"n": i, "user": "ann", "text": "lorem ipsum dolor sit amet, consectetur adipiscing "
            "elit, sed do eiusmod tem", "ok": True}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    role: str
    engine: str
    work: str
    setting: str
    token: str
    count: int

    @property
    def url(self) -> str:
        return URLS[self.engine]


def cell_from_argv(argv: list[str] | None = None) -> Cell:
    role, engine, work, setting, token, count = (argv or sys.argv)[1:7]
    return Cell(role, engine, work, setting, token, int(count))


def ready() -> None:
    print("READY", file=_OUT, flush=True)


def result(**fields: Any) -> None:
    print("RESULT " + json.dumps(fields), file=_OUT, flush=True)


def produced(start: float) -> None:
    """The producer's report: when it started sending, and when its last send returned."""
    result(start=start, sent=time.time())


def unsupported(reason: str) -> None:
    """This peer cannot do this cell: say why (run.py prints n/a with the reason)."""
    print("NA " + reason, file=_OUT, flush=True)


class Counter:
    """Counts handled messages; notes the moment the expected one was handled."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event() if _has_loop() else None

    def hit(self) -> None:
        self.count += 1
        self.last = time.time()
        if self.count == self.expected and self.done is not None:
            self.done.set()


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def lanes(total: int, send: Callable[[int], Awaitable[Any]]) -> float:
    """Call ``send(i)`` for every i, IN_FLIGHT awaited at once; returns the start time."""

    async def lane(first: int) -> None:
        for i in range(first, total, IN_FLIGHT):
            await send(i)

    start = time.time()
    await asyncio.gather(*(lane(k) for k in range(min(IN_FLIGHT, total))))
    return start


async def until_quiet(counter: Counter, quiet: float = QUIET) -> None:
    """Wait until all signals arrived, or none for ``quiet`` seconds (at most once)."""
    seen, since = -1, time.monotonic()
    while counter.count < counter.expected:
        if counter.count != seen:
            seen, since = counter.count, time.monotonic()
        elif time.monotonic() - since > quiet:
            return
        await asyncio.sleep(0.005)


async def timed_calls(count: int, call: Callable[[int], Awaitable[Any]]) -> list[int]:
    """One call at a time after a warm-up; each answer must be n + 1; round trips in ns."""
    for i in range(min(CALL_WARMUP, count)):
        await call(i)
    times = []
    clock = time.perf_counter_ns
    for i in range(count):
        started = clock()
        value = await call(i)
        times.append(clock() - started)
        if value != i + 1:
            raise RuntimeError(f"call {i} answered {value!r}")
    return times


def forever() -> Awaitable[None]:
    """A responder serves until run.py stops its process group."""
    return asyncio.get_running_loop().create_future()
