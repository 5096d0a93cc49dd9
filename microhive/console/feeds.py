"""What the console samples and pushes: queue lengths and rates over time, the signals
flowing, and the fan-out of both to every open page (server-sent events).

Rates come from what each queue shows: where the broker can replay a queue (``tail``, the
``replay`` capability: memory, Redis, NATS, Kafka) the console follows it without consuming
and counts what was sent; what left the queue (handled or dead-lettered) is what was sent
minus what the length grew by. Where it cannot (RabbitMQ), only the length's own change is
shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..cli.queues import jsonable
from ..envelope import Envelope
from ..errors import CapabilityError
from ..stopping import cancel_and_wait

if TYPE_CHECKING:
    from ..broker import QueueBroker

log = logging.getLogger("microhive.console")

HISTORY = 600
"""Samples kept per queue (ten minutes at one a second)."""
SCANNED_STATS = ("kafka",)
"""Engines whose ``stats()`` reads the dead-letter topic through to count it: sampled every
few ticks, their length alone in between."""
RECENT_SIGNALS = 200
"""Signals kept for a page that opens now."""


@dataclass
class QueueSeries:
    """One queue's samples, oldest first."""

    name: str
    times: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lengths: deque[int | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    dead: deque[int | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    sent: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    done: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    sent_total: int = 0
    """Messages the tail saw sent since the console started (None-like 0 without replay)."""
    replay: bool = False
    error: str | None = None
    consumers: int | None = None
    """Consumers at the latest full sample (None: the engine cannot tell)."""
    in_flight: int | None = None
    """Messages held unsettled at the latest full sample (None: the engine cannot tell)."""
    _last_sent: int = 0

    def add(self, at: float, length: int | None, dead: int | None) -> dict[str, Any]:
        """Append one sample and return it (rates per second since the previous one)."""
        sent_rate = done_rate = None
        if self.times and length is not None:
            elapsed = max(at - self.times[-1], 1e-3)
            previous = self.lengths[-1]
            new = self.sent_total - self._last_sent
            if self.replay:
                sent_rate = new / elapsed
                if previous is not None:
                    done_rate = max(0.0, (new - (length - previous)) / elapsed)
            elif previous is not None:
                sent_rate = None
                done_rate = max(0.0, (previous - length) / elapsed)
        self._last_sent = self.sent_total
        self.times.append(at)
        self.lengths.append(length)
        self.dead.append(dead)
        self.sent.append(sent_rate)
        self.done.append(done_rate)
        return self.last()

    def last(self) -> dict[str, Any]:
        if not self.times:
            return {"queue": self.name, "at": None, "length": None, "dead": None,
                    "consumers": None, "in_flight": None, "sent_rate": None,
                    "done_rate": None, "replay": self.replay, "error": self.error}  # fmt: skip
        return {
            "queue": self.name,
            "at": self.times[-1],
            "length": self.lengths[-1],
            "dead": self.dead[-1],
            "consumers": self.consumers,
            "in_flight": self.in_flight,
            "sent_rate": self.sent[-1],
            "done_rate": self.done[-1],
            "replay": self.replay,
            "error": self.error,
        }

    def history(self) -> dict[str, Any]:
        return {
            "queue": self.name,
            "times": list(self.times),
            "lengths": list(self.lengths),
            "dead": list(self.dead),
            "sent": list(self.sent),
            "done": list(self.done),
            "replay": self.replay,
        }


class QueueSampler:
    """Samples each queue's :meth:`~QueueBroker.stats` every tick (where counting dead
    letters means scanning them, every few ticks and right after the console changed them,
    the length alone in between), and follows queues with ``tail`` for rates."""

    def __init__(self, broker: QueueBroker, dead_every: int = 5) -> None:
        self.broker = broker
        self.dead_every = dead_every
        self.scanned = urlsplit(broker.url).scheme.split("+")[0] in SCANNED_STATS
        self.series: dict[str, QueueSeries] = {}
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._ticks = 0
        self._dead_now: set[str] = set()

    def watch(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self.series:
                series = self.series[name] = QueueSeries(name, replay=False)
                if self.broker.capabilities.replay:
                    self._tails[name] = asyncio.get_running_loop().create_task(
                        self._follow(series), name=f"console.tail.{name}"
                    )

    def dead_changed(self, name: str) -> None:
        """Count ``name``'s dead letters at the next tick (the console just changed them)."""
        self._dead_now.add(name)

    async def _follow(self, series: QueueSeries) -> None:
        """Count what is sent to the queue, without consuming it; back off on errors."""
        pause = 1.0
        while True:
            try:
                messages = self.broker.queue(series.name).tail(last=0)
                series.replay = True
                async for _ in messages:
                    series.sent_total += 1
                    pause = 1.0
            except CapabilityError:
                series.replay = False
                return
            except Exception as exc:
                series.replay = False
                log.warning("console: cannot follow queue %r (retrying): %s", series.name, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)

    async def sample(self) -> list[dict[str, Any]]:
        """One sample of every watched queue."""
        count_dead = not self.scanned or self._ticks % self.dead_every == 0
        self._ticks += 1
        names = list(self.series)
        results = await asyncio.gather(
            *(self._one(name, count_dead or name in self._dead_now) for name in names)
        )
        self._dead_now.clear()
        return list(results)

    async def _one(self, name: str, count_dead: bool) -> dict[str, Any]:
        series = self.series[name]
        at = time.time()
        dead = series.dead[-1] if series.dead else None
        try:  # a queue only heartbeats named is undeclared here: both calls take its name
            length: int | None
            if count_dead or dead is None:
                stats = await self.broker.stats(name)
                length, dead = stats.length, stats.dead_letters
                series.consumers, series.in_flight = stats.consumers, stats.in_flight
            else:
                length = await self.broker.queue(name).length()
            series.error = None
        except Exception as exc:
            length = None
            series.error = str(exc) or type(exc).__name__
        return series.add(at, length, dead)

    async def close(self) -> None:
        await cancel_and_wait(*self._tails.values())
        self._tails.clear()


@dataclass
class SignalLog:
    """The signals and calls the console saw on the bus: the latest ones and counts."""

    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_SIGNALS))
    counts: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    fresh: list[dict[str, Any]] = field(default_factory=list)

    def seen(self, envelope: Envelope) -> None:
        kind = str(envelope.kind.value)
        (self.calls if kind == "call" else self.counts)[envelope.name] += 1
        record = {
            "at": envelope.sent_at,
            "kind": kind,
            "name": envelope.name,
            "id": envelope.id,
            "sender": envelope.sender,
            "payload": jsonable(envelope.payload),
        }
        self.recent.append(record)
        if len(self.fresh) < 100:  # a flood reaches the page as counts, not as every item
            self.fresh.append(record)

    def take(self) -> dict[str, Any]:
        """What came since the previous take, and the totals."""
        fresh, self.fresh = self.fresh, []
        return {"new": fresh, "counts": dict(self.counts), "calls": dict(self.calls)}

    def snapshot(self) -> dict[str, Any]:
        return {"new": list(self.recent), "counts": dict(self.counts), "calls": dict(self.calls)}


class Hub:
    """Fans each event out to every open stream; a slow page loses its oldest events, never
    slows the others down."""

    def __init__(self, backlog: int = 30) -> None:
        self.backlog = backlog
        self._clients: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self._clients:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    @property
    def clients(self) -> int:
        return len(self._clients)

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.backlog)
        self._clients.add(queue)
        try:
            yield queue
        finally:
            self._clients.discard(queue)
