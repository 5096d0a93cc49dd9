"""Single-runner schedules (``single=True``): one run per tick across replicas, on every engine.

The lease contract is checked on each engine's :class:`~microhive.leases.Lease` directly;
then three replicas of ``tests.single_agents:Ticker`` run a 0.5 s schedule — three real
``microhive run`` processes on the engines, three agent instances in one process on
memory:// — and the replica holding the lease is SIGKILLed (stopped, on memory). Every tick
must run at most once, the ticks run without gaps but at the takeover, and another replica
must take over.
"""

from __future__ import annotations

import itertools
import signal
from collections import Counter
from pathlib import Path

import pytest

from microhive import QueueBroker
from microhive.leases import Lease, open_lease

from ..cli.helpers import Process
from ..processes import Records, ready, stop, until
from ..single_agents import Ticker, tick_now
from .conftest import Factory, Transport


@pytest.fixture
def ticks(tmp_path: Path) -> Records:
    return Records(tmp_path / "ticks")


async def _leases(broker: QueueBroker, ttl: float = 1.0) -> tuple[Lease, Lease]:
    name = "Agent.job"
    return open_lease(broker, name, "a", ttl), open_lease(broker, name, "b", ttl)


async def test_one_holder_at_a_time_and_ticks_only_grow(factory: Factory) -> None:
    broker = await factory.broker()
    a, b = await _leases(broker)
    try:
        assert await until(a.acquire, 30, "a to take the free lease")
        assert not await b.acquire()
        # (on Kafka b's joining makes the group rebalance: a holds the lease again after it)
        assert await until(a.renew, 30, "a to hold the lease still")
        assert not await b.renew()
        assert await a.claim(5)
        assert not await a.claim(5)
        assert not await a.claim(4)
        assert await a.claim(6)
        await a.release()
        assert await until(b.acquire, 30, "b to take the released lease")
        assert not await a.renew()
        assert not await b.claim(6), "the last tick run survives a change of holder"
        assert await b.claim(7)
    finally:
        await a.close()
        await b.close()


async def test_a_lease_whose_holder_is_gone_is_taken_over(factory: Factory) -> None:
    broker = await factory.broker()
    a, b = await _leases(broker)
    try:
        assert await until(a.acquire, 30, "a to take the free lease")
        assert await a.claim(10)
        await a.close()  # gone without releasing: a crash, as far as the engine can tell
        assert await until(b.acquire, 30, "b to take the lease over")
        assert not await b.claim(10)
        assert await b.claim(11)
    finally:
        await b.close()


async def test_an_agent_without_a_broker_keeps_its_lease_on_the_bus(factory: Factory) -> None:
    bus = await factory.bus()  # (skips on Kafka, which has no bus)
    a, b = open_lease(bus, "Agent.job", "a", 1.0), open_lease(bus, "Agent.job", "b", 1.0)
    try:
        assert await until(a.acquire, 30, "a to take the free lease")
        assert not await b.acquire()
        assert await a.claim(1)
    finally:
        await a.release()
        await a.close()
        await b.close()


def _check(ticks: Counter[int], before: list[int], after: list[int]) -> None:
    """No tick twice; the ticks run before and after the takeover are each without gaps."""
    twice = sorted(t for t, n in ticks.items() if n > 1)
    assert not twice, f"ticks run more than once: {twice}"
    assert before and after, (before, after)
    assert max(before) < min(after), "the new holder ran a tick from before the takeover"
    for run in (sorted(before), sorted(after)):
        gaps = [(x, y) for x, y in itertools.pairwise(run) if y != x + 1]
        assert not gaps, f"ticks missing between {gaps}"


async def test_replicas_in_one_process_run_each_tick_once(transport: Transport, url: str) -> None:
    if transport.name != "memory":
        pytest.skip("out-of-process engines: test_replica_processes_run_each_tick_once")
    broker = QueueBroker.from_url(url)
    agents = [Ticker(broker=broker) for _ in range(3)]
    for agent in agents:
        await agent.start()

    def ticks(agent: Ticker) -> list[int]:
        return list(agent.__dict__.get("ticks", []))

    try:
        await until(lambda: sum(len(ticks(a)) for a in agents) >= 6, 30, "six ticks")
        holder = max(agents, key=lambda a: max(ticks(a), default=-1))
        await holder.stop()  # a clean stop releases the lease: the next tick is taken over
        left = [a for a in agents if a is not holder]
        before = [t for a in agents for t in ticks(a)]
        await until(
            lambda: sum(t > max(before) for a in left for t in ticks(a)) >= 4, 30, "takeover"
        )
        after = [t for a in left for t in ticks(a) if t > max(before)]
    finally:
        for agent in agents:
            await agent.stop()
    every: Counter[int] = Counter(t for a in agents for t in ticks(a))
    _check(every, before, after)


async def test_replica_processes_run_each_tick_once(
    transport: Transport, url: str, ticks: Records
) -> None:
    """Three ``microhive run`` processes; the holder is SIGKILLed mid-run."""
    if transport.name == "memory":
        pytest.skip("memory:// lives in one process: test_replicas_in_one_process_...")
    where = ["--transport", url] if transport.signals else ["--bus", "memory://", "--broker", url]
    command = ("-m", "microhive", "run", "tests.single_agents:Ticker", *where)
    env = {"MH_TEST_RECORD": str(ticks.base)}
    replicas = [Process(*command, "--grace-period", "1", env=env) for _ in range(3)]
    try:
        for replica in replicas:
            await ready(replica)
        await until(lambda: sum(ticks.processed().values()) >= 6, 60, "six ticks")
        pids = [r.popen.pid for r in replicas]
        holder = max(pids, key=lambda pid: max(ticks.by_pid(pid), default=-1))
        victim = next(r for r in replicas if r.popen.pid == holder)
        victim.popen.send_signal(signal.SIGKILL)
        victim.wait(timeout=20)
        killed_at = tick_now()
        before = list(ticks.processed().elements())
        left = [pid for pid in pids if pid != holder]

        def taken_over() -> bool:
            return sum(t > killed_at for pid in left for t in ticks.by_pid(pid)) >= 4

        await until(taken_over, 120, "another replica to take over")
        after = [t for pid in left for t in ticks.by_pid(pid) if t > max(before)]
        for replica in replicas:
            if replica is not victim:
                assert stop(replica) == 0, replica.output
    finally:
        for replica in replicas:
            replica.kill()
    _check(ticks.processed(), before, after)
    assert max(ticks.by_pid(holder)) == max(before), "ticks ran while the holder died"
