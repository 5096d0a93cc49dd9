"""Helpers for testing your own agents: a private memory hive, started and stopped for you.

async with run_agents(UserAgent, MentionAgent, catalog=catalog) as hive:
    assert await hive.bus.check_user.call("test", user="ann") is False
    recorder = await hive.record(signals.user_enter)
    ...
    await recorder.wait(1)
    assert await hive.run_task(queues.add.s(x=1, y=1)) == 2   # tasks run in-process too
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from .agent.agent import MicroAgent
from .broker import QueueBroker
from .bus import SignalBus, Subscription
from .catalog import Catalog
from .declarations import Queue, Signal
from .envelope import Envelope, new_id
from .tasks.job import Job
from .transports.memory import Hive, MemoryBroker, MemoryBus

A = TypeVar("A", bound=MicroAgent)


async def eventually(
    condition: Callable[[], Any | Awaitable[Any]],
    timeout: float = 5.0,
    interval: float = 0.01,
) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, and return it;
    ``TimeoutError`` after ``timeout`` seconds. For tests: wait for an outcome, never sleep
    blindly."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(interval)


class SignalRecorder:
    """Records every signal (and call) of the given names seen on the bus."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._changed = asyncio.Event()
        self.subscription: Subscription | None = None

    def __call__(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)
        self._changed.set()

    async def wait(self, count: int = 1, timeout: float = 5.0) -> list[Envelope]:
        """Wait until ``count`` signals were recorded; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while len(self.envelopes) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.envelopes)

    @property
    def payloads(self) -> list[Any]:
        return [envelope.payload for envelope in self.envelopes]


class TestHive:
    """Agents running on one private in-process hive, and ways to observe them."""

    __test__ = False  # not a pytest test class

    def __init__(self, bus: SignalBus, broker: QueueBroker, agents: Sequence[MicroAgent]) -> None:
        self.bus = bus
        self.broker = broker
        self.agents = list(agents)

    def agent(self, cls: type[A]) -> A:
        """The running instance of ``cls`` (the first, if there are several)."""
        for agent in self.agents:
            if isinstance(agent, cls):
                return agent
        raise LookupError(f"no {cls.__name__} in this hive")

    async def record(self, *signals: Signal | str) -> SignalRecorder:
        recorder = SignalRecorder()
        names = [s.name if isinstance(s, Signal) else s for s in signals]
        recorder.subscription = await self.bus.subscribe(names, recorder)
        return recorder

    async def wait_for(
        self,
        condition: Callable[[], Any | Awaitable[Any]],
        timeout: float = 5.0,
        interval: float = 0.01,
    ) -> Any:
        """Poll ``condition`` (sync or async) until it returns something truthy."""
        return await eventually(condition, timeout, interval)

    async def submit(self, target: Any, **options: Any) -> Job[Any]:
        """Submit a task or workflow to the hive's agents (``queues.add.s(x=1, y=1)``)."""
        return await self.broker.submit(target, **options)

    async def run_task(self, target: Any, timeout: float = 5.0, **options: Any) -> Any:
        """Submit and wait for the result: ``assert await hive.run_task(add.s(x=1, y=1)) == 2``
        (a failure raises :class:`~microhive.errors.TaskFailed` here)."""
        job = await self.broker.submit(target, **options)
        return await job.result(timeout=timeout)

    def job(self, job_id: str) -> Job[Any]:
        return self.broker.job(job_id)

    async def drain(self, queue: Queue | str, timeout: float = 5.0) -> None:
        """Wait until every message of ``queue`` is acknowledged (or dead-lettered)."""
        await self.wait_for(lambda: _is_empty(self.broker, queue), timeout)


async def _is_empty(broker: QueueBroker, queue: Queue | str) -> bool:
    return await broker.length(queue) == 0


@asynccontextmanager
async def run_agents(
    *agents: type[MicroAgent],
    catalog: Catalog | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    grace_period: float = 5.0,
) -> AsyncIterator[TestHive]:
    """Start one instance per class given (repeat a class for several) on a fresh private
    hive; ``settings`` maps class names to agent settings. Stops everything on exit."""
    hive = Hive(f"test-{new_id()[:8]}")
    catalog = catalog or Catalog.empty()
    bus = MemoryBus(f"memory://{hive.name}", hive=hive, signals=catalog.signals)
    broker = MemoryBroker(f"memory://{hive.name}", hive=hive, queues=catalog.queues)
    settings = settings or {}
    instances = [
        agent
        if isinstance(agent, MicroAgent)
        else agent(
            bus, broker, settings=settings.get(agent.__name__, {}), grace_period=grace_period
        )
        for agent in agents
    ]
    started: list[MicroAgent] = []
    try:
        for instance in instances:
            await instance.start()
            started.append(instance)
        yield TestHive(bus, broker, instances)
    finally:
        for instance in reversed(started):
            await instance.stop()
        await bus.close()
        await broker.close()
