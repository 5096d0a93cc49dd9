"""The console's view of one hive: it listens to heartbeats and signals on the bus, samples
the queues on the broker, and pushes one event a tick to every open page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..agent.agent import MicroAgent
from ..agent.heartbeat import HEARTBEAT_SIGNAL
from ..agent.specs import ConsumerSpec
from ..broker import QueueBroker
from ..bus import SignalBus, Subscription
from ..catalog import Catalog
from ..envelope import Envelope
from ..stopping import cancel_and_wait
from ..urls import redact
from .feeds import Hub, QueueSampler, SignalLog
from .heartbeats import Agents
from .jobs import JobsFeed

log = logging.getLogger("microhive.console")


def watched_names(
    catalog: Catalog | None, classes: Sequence[type[MicroAgent]]
) -> tuple[list[str], list[str]]:
    """The queues and signals of the catalog and of the agent classes, each once."""
    queues: list[str] = []
    signals: list[str] = []
    if catalog is not None:
        queues += list(catalog.queues)
        signals += list(catalog.signals)
    for cls in classes:
        if cls.catalog is not None:
            queues += list(cls.catalog.queues)
            signals += list(cls.catalog.signals)
        queues += [
            h.spec.queue.name for h in cls.handlers.consumers if isinstance(h.spec, ConsumerSpec)
        ]
        signals += [signal.name for signal in cls.handlers.signals]
    return list(dict.fromkeys(queues)), list(dict.fromkeys(signals))


class Monitor:
    """Owns (or borrows) a bus and a broker; :meth:`start` and :meth:`close` it."""

    def __init__(
        self,
        bus: SignalBus | None,
        broker: QueueBroker,
        *,
        queues: Iterable[str] = (),
        signals: Iterable[str] = (),
        every: float = 1.0,
        own: bool = True,
        own_bus: bool | None = None,
        jobs: JobsFeed | None = None,
        expected: Iterable[str] = (),
    ) -> None:
        """``own``: close the broker (and the bus, unless ``own_bus`` says otherwise) at
        :meth:`close`; a program's own bus and broker are borrowed, left open."""
        self.bus = bus
        self.broker = broker
        self.every = every
        self.own = own
        self.own_bus = own if own_bus is None else own_bus
        self.agents = Agents()
        self.signals = SignalLog()
        self.sampler = QueueSampler(broker)
        self.hub = Hub()
        self.jobs = jobs
        self.expected = list(dict.fromkeys(expected))
        """Agent classes (``module:Class``) the console was given: shown until one runs."""
        self._queues = list(dict.fromkeys(queues))
        self._signals: set[str] = set()
        self._wanted = list(dict.fromkeys(signals))
        self._subscriptions: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None
        self._latest: list[dict[str, Any]] = []
        self.started_at = time.time()

    def describe(self) -> dict[str, Any]:
        """Where the console looks (credentials redacted)."""
        return {
            "bus": redact(self.bus.url) if self.bus is not None else None,
            "broker": redact(self.broker.url),
            "every": self.every,
            "replay": self.broker.capabilities.replay,
            "results": self.jobs is not None,
        }

    async def start(self) -> None:
        await self.broker.connect()
        self.sampler.watch(self._queues)
        if self.bus is not None:
            await self.bus.connect()
            await self._listen([HEARTBEAT_SIGNAL, *self._wanted])
        self._latest = await self.sampler.sample()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="console.monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.close()
        self._subscriptions.clear()
        await self.sampler.close()
        if self.jobs is not None:
            await self.jobs.close()
        if self.own_bus and self.bus is not None:
            await self.bus.close()
        if self.own:
            await self.broker.close()

    async def _listen(self, names: Iterable[str]) -> None:
        new = [name for name in names if name not in self._signals]
        if not new or self.bus is None:
            return
        self._signals.update(new)
        self._subscriptions.append(await self.bus.subscribe(new, self._on_signal))

    def _on_signal(self, envelope: Envelope) -> None:
        if envelope.name == HEARTBEAT_SIGNAL:
            self.agents.seen(envelope.payload)
        else:
            self.signals.seen(envelope)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.every
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due, loop.time())
            try:
                await self.tick()
            except Exception:  # the console goes on; the page shows the engine's error
                log.exception("console: a sample failed")

    async def tick(self) -> dict[str, Any]:
        """Take one sample, follow what heartbeats revealed, and push the event."""
        found = [name for name in self.agents.queues() if name not in self.sampler.series]
        self.sampler.watch(found)
        if self.bus is not None:
            try:
                await self._listen(self.agents.signals())
            except Exception as exc:
                log.warning("console: cannot subscribe to new signals: %s", exc)
        self._latest = await self.sampler.sample()
        event = {
            "type": "tick",
            "at": time.time(),
            "queues": self._latest,
            "agents": self.agents.snapshot(),
            "missing": self.missing(),
            "signals": self.signals.take(),
        }
        if self.jobs is not None and (jobs := await self.jobs.sample()) is not None:
            event["jobs"] = jobs
        self.hub.publish(event)
        return event

    def snapshot(self) -> dict[str, Any]:
        """Everything a page that opens now draws: histories, agents, recent signals."""
        return {
            "type": "snapshot",
            "at": time.time(),
            "hive": self.describe(),
            "queues": [series.history() for series in self.sampler.series.values()],
            "latest": self._latest,
            "agents": self.agents.snapshot(),
            "missing": self.missing(),
            "signals": self.signals.snapshot(),
            "watching": sorted(self._signals - {HEARTBEAT_SIGNAL}),
            "jobs": self.jobs.latest if self.jobs is not None else None,
        }

    def missing(self) -> list[str]:
        """The agent classes given with no instance alive."""
        alive = {row["handlers"].get("agent") for row in self.agents.snapshot() if row["alive"]}
        return [name for name in self.expected if name not in alive]

    def queue_names(self) -> list[str]:
        return list(self.sampler.series)
