"""Heartbeats: a running agent says it is alive and what it does; the console counts an
instance gone after missed beats or its last word."""

from __future__ import annotations

import datetime
import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from microhive import Envelope, MicroAgent, Queue, QueueBroker, Signal, SignalBus, consumer
from microhive.agent.heartbeat import HEARTBEAT_SIGNAL, MISSED
from microhive.agent.inventory import next_fires
from microhive.agent.specs import PeriodicSpec
from microhive.console.heartbeats import Agents
from microhive.middleware import Middleware
from microhive.settings import load_settings
from microhive.testing import eventually

JOBS = Queue("beat_jobs")
HELLO = Signal("beat_hello", ["who"])


class Beating(MicroAgent):
    @consumer(JOBS)
    async def job(self, n: int) -> None:
        pass


class Published(Middleware):
    def __init__(self) -> None:
        self.names: list[str] = []

    def publishing(self, envelope: Envelope, destination: str) -> None:
        self.names.append(envelope.name)


async def test_an_agent_beats_until_it_stops_then_says_so() -> None:
    seen: list[Envelope] = []
    published = Published()
    async with (
        SignalBus.from_url("memory://beats", middleware=[published]) as bus,
        QueueBroker.from_url("memory://beats") as broker,
    ):
        await bus.subscribe([HEARTBEAT_SIGNAL], seen.append)
        quiet = Beating(bus, broker, name="Quiet", heartbeat=None)
        agent = Beating(bus, broker, heartbeat=0.05)
        await quiet.start()
        await agent.start()
        await eventually(lambda: len(seen) >= 3, timeout=10)
        await agent.stop()
        await eventually(lambda: seen[-1].payload["state"] == "stopping", timeout=10)
        await quiet.stop()
    beat = seen[0].payload
    assert beat["agent"] == "Beating" and beat["instance"] == agent.instance_id
    assert beat["pid"] == os.getpid() and beat["interval"] == 0.05
    assert beat["handlers"]["consumers"][0]["queue"] == JOBS.name
    assert {e.payload["instance"] for e in seen} == {agent.instance_id}  # Quiet never beat
    assert [e.payload["state"] for e in seen[:-1]] == ["running"] * (len(seen) - 1)
    assert HEARTBEAT_SIGNAL not in published.names  # past the middleware: not the program's


def test_an_agent_without_a_bus_has_no_heartbeat() -> None:
    assert Beating(None, QueueBroker.from_url("memory://")).heartbeat is None


def test_run_settings_turn_heartbeats_off() -> None:
    assert load_settings(None).heartbeat == 5.0
    assert load_settings(None, heartbeat=0).heartbeat == 0


def test_an_instance_is_gone_after_missed_beats_or_its_last_word() -> None:
    agents = Agents()
    beat = {"instance": "A.1", "agent": "A", "interval": 2.0, "state": "running"}
    agents.seen(beat, now=100.0)
    assert agents.snapshot(now=100.0 + 2.0 * MISSED)[0]["alive"]
    assert not agents.snapshot(now=100.1 + 2.0 * MISSED)[0]["alive"]
    agents.seen(beat, now=200.0)
    assert agents.snapshot(now=200.0)[0]["alive"] and agents.snapshot(now=200.0)[0]["beats"] == 2
    agents.seen({**beat, "state": "stopping"}, now=201.0)
    assert agents.snapshot(now=201.0)[0]["state"] == "gone"
    assert agents.seen("not a beat") is None and agents.seen({"instance": 5}) is None
    assert agents.snapshot(now=201.0 + 3600) == []  # forgotten in the end


@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(
    period=st.floats(0.01, 1e5),
    start_after=st.floats(0, 1e5),
    age=st.floats(0, 1e6),
)
def test_a_running_periodic_schedule_fires_next_on_its_own_grid(
    period: float, start_after: float, age: float
) -> None:
    spec = PeriodicSpec(period=period, timeout=None, start_after=start_after, jitter=0.0)
    started = 1_700_000_000.0
    now = datetime.datetime.fromtimestamp(started + age, datetime.UTC)
    fires = next_fires(spec, now, started)
    assert fires[0] >= now.timestamp() - 1e-6 * max(1.0, age)  # not in the past
    assert fires[0] - now.timestamp() <= max(period, start_after) * (1 + 1e-9) + 1e-6
    for fire in fires:  # on the grid: the start, plus a whole number of periods
        step = round((fire - started - start_after) / period)
        assert abs(fire - (started + start_after + step * period)) < 1e-5
    assert all(b > a for a, b in itertools.pairwise(fires))


async def test_the_console_sees_signals_an_agent_reports_receiving() -> None:
    from microhive import receiver
    from microhive.console.monitor import Monitor

    class Greeter(MicroAgent):
        @receiver(HELLO)
        async def hello(self, who: str) -> None:
            pass

    async with (
        SignalBus.from_url("memory://discover") as bus,
        QueueBroker.from_url("memory://discover") as broker,
    ):
        monitor = Monitor(bus, broker, every=0.05, own=False)
        await monitor.start()
        agent = Greeter(bus, broker, heartbeat=0.05)
        await agent.start()
        try:
            await eventually(lambda: HELLO.name in monitor._signals, timeout=10)
            await bus.signal(HELLO).send("test", who="ann")
            await eventually(lambda: monitor.signals.counts[HELLO.name] == 1, timeout=10)
        finally:
            await agent.stop()
            await monitor.close()


async def test_a_closed_bus_is_not_opened_again_by_a_beat() -> None:
    from tests import engines

    engines.require_redis()
    url = engines.with_query(engines.REDIS_URL, prefix="mhconsole-closed-beats:")
    bus = SignalBus.from_url(url)
    broker = QueueBroker.from_url("memory://closed-beats")
    agent = Beating(bus, broker, heartbeat=0.05)
    await agent.start()
    await bus.close()  # the program closed its bus before stopping the agent
    await agent.stop()
    assert not bus.connected
    await broker.close()


async def test_an_agent_class_given_shows_until_an_instance_runs() -> None:
    from microhive.console import console_app
    from tests.console.server import serving

    name = f"{Beating.__module__}:{Beating.__qualname__}"
    app = console_app(transport="memory://missing", agents=[Beating], every=0.05)
    async with serving(app) as client:
        assert (await client.get("/api/overview")).json()["missing"] == [name]
        async with (
            SignalBus.from_url("memory://missing") as bus,
            QueueBroker.from_url("memory://missing") as broker,
        ):
            agent = Beating(bus, broker, heartbeat=0.05)
            await agent.start()
            try:

                async def running() -> bool:
                    return bool((await client.get("/api/overview")).json()["missing"] == [])

                assert await eventually(running, timeout=10)
            finally:
                await agent.stop()
