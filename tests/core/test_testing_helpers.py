"""microhive.testing.run_agents: a private hive, recorders, waiting, draining, settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from microhive import (
    Catalog,
    MicroAgent,
    Namespace,
    Queue,
    Signal,
    UnknownNameError,
    consumer,
    on,
    receiver,
)
from microhive.testing import run_agents

PING = Signal("ping", ["n"])
PONG = Signal("pong", ["n", "by"])
WORK = Queue("work")
CATALOG = Catalog(Namespace([PING, PONG], kind="signal"), Namespace([WORK], kind="queue"))


class Ponger(MicroAgent):
    @receiver(PING)
    async def on_ping(self, n: int) -> None:
        await self.bus.pong.send(self.instance_id, n=n, by=self.settings.get("label", "?"))


class Worker(MicroAgent):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.done: list[int] = []

    @consumer(WORK, concurrency=2)
    async def work(self, n: int) -> None:
        await asyncio.sleep(self.settings.get("delay", 0))
        self.done.append(n)


async def test_recorder_wait_returns_what_was_recorded() -> None:
    async with run_agents(Ponger, catalog=CATALOG) as hive:
        recorder = await hive.record(PONG)
        assert recorder.envelopes == []
        await hive.bus.ping.send("test", n=1)
        await hive.bus.send("ping", "test", n=2)
        envelopes = await recorder.wait(2)
        assert [e.payload["n"] for e in envelopes] == [1, 2]
        assert recorder.payloads == [{"n": 1, "by": "?"}, {"n": 2, "by": "?"}]
        assert {e.name for e in envelopes} == {"pong"}
        assert await recorder.wait(1) == envelopes, "an already reached count returns at once"


async def test_recorder_wait_times_out() -> None:
    async with run_agents(Ponger, catalog=CATALOG) as hive:
        recorder = await hive.record(PONG, "ping")
        await hive.bus.ping.send("test", n=1)
        with pytest.raises(TimeoutError):
            await recorder.wait(3, timeout=0.05)
        names = [e.name for e in recorder.envelopes]
        assert sorted(names) == ["ping", "pong"], "records every name it was given"


async def test_settings_per_class_and_several_instances_of_one_class() -> None:
    settings = {"Ponger": {"label": "p"}, "Worker": {"delay": 0}}
    async with run_agents(Ponger, Ponger, Ponger, Worker, catalog=CATALOG, settings=settings) as (
        hive
    ):
        pongers = [a for a in hive.agents if isinstance(a, Ponger)]
        assert len(pongers) == 3
        assert len({a.instance_id for a in pongers}) == 3
        assert all(a.settings == {"label": "p"} for a in pongers)
        assert hive.agent(Worker).settings == {"delay": 0}
        recorder = await hive.record(PONG)
        await hive.bus.ping.send("test", n=1)
        envelopes = await recorder.wait(3)
        assert sorted(e.sender for e in envelopes) == sorted(a.instance_id for a in pongers)
        assert {e.payload["by"] for e in envelopes} == {"p"}


async def test_agent_lookup() -> None:
    class Other(MicroAgent):
        pass

    async with run_agents(Ponger, Worker, Ponger, catalog=CATALOG) as hive:
        first = hive.agent(Ponger)
        assert first is hive.agents[0]
        assert isinstance(hive.agent(Worker), Worker)
        assert hive.agent(MicroAgent) is first, "the first instance of a base class"
        with pytest.raises(LookupError, match="no Other in this hive"):
            hive.agent(Other)
        assert all(agent.running for agent in hive.agents)
    assert not any(agent.running for agent in hive.agents), "stopped on exit"


async def test_agents_without_settings_get_empty_settings() -> None:
    async with run_agents(Ponger, catalog=CATALOG, settings={"Worker": {"x": 1}}) as hive:
        assert hive.agent(Ponger).settings == {}


async def test_wait_for_sync_and_async_conditions() -> None:
    async with run_agents(Worker, catalog=CATALOG) as hive:
        worker = hive.agent(Worker)
        await hive.broker.work.send({"n": 1})
        assert await hive.wait_for(lambda: worker.done) == [1]

        async def length() -> bool:
            return await hive.broker.length(WORK) == 0

        assert await hive.wait_for(length) is True
        with pytest.raises(TimeoutError):
            await hive.wait_for(lambda: len(worker.done) > 1, timeout=0.05)


async def test_drain_waits_until_every_message_is_settled() -> None:
    settings = {"Worker": {"delay": 0.01}}
    async with run_agents(Worker, Worker, catalog=CATALOG, settings=settings) as hive:
        for n in range(20):
            await hive.broker.work.send({"n": n})
        await hive.drain(WORK)
        assert await hive.broker.length(WORK) == 0
        done = [n for agent in hive.agents for n in agent.done]  # type: ignore[attr-defined]
        assert sorted(done) == list(range(20))


async def test_drain_right_after_a_send_to_an_idle_consumer() -> None:
    async with run_agents(Worker, catalog=CATALOG) as hive:
        worker = hive.agent(Worker)
        queue = hive.broker.hive.queue("work")  # type: ignore[attr-defined]
        await hive.wait_for(lambda: queue.waiters)  # the consumer waits for a message
        await hive.broker.work.send({"n": 1})
        assert await hive.broker.length(WORK) == 1
        await hive.drain("work")
        assert worker.done == [1]


async def test_drain_times_out_when_nobody_consumes() -> None:
    async with run_agents(Ponger, catalog=CATALOG) as hive:
        await hive.broker.work.send({"n": 1})
        with pytest.raises(TimeoutError):
            await hive.drain(WORK, timeout=0.05)


async def test_each_run_gets_a_private_hive() -> None:
    async with (
        run_agents(Worker, catalog=CATALOG) as first,
        run_agents(catalog=CATALOG) as second,
    ):
        await second.broker.work.send({"n": 1})
        assert await second.broker.length(WORK) == 1
        assert await first.broker.length(WORK) == 0
        assert first.bus.url != second.bus.url


async def test_catalog_names_are_checked() -> None:
    async with run_agents(catalog=CATALOG) as hive:
        with pytest.raises(UnknownNameError, match="unknown signal 'pnig'"):
            _ = hive.bus.pnig
    async with run_agents() as hive:
        with pytest.raises(UnknownNameError):
            _ = hive.bus.ping


async def test_a_failing_start_stops_the_agents_already_started() -> None:
    stopped: list[str] = []

    class Good(MicroAgent):
        @on("post_stop")
        def gone(self) -> None:
            stopped.append(self.name)

    class Bad(MicroAgent):
        @on("pre_start")
        def fail(self) -> None:
            raise RuntimeError("cannot start")

    with pytest.raises(RuntimeError, match="cannot start"):
        async with run_agents(Good, Bad):
            pytest.fail("the body must not run")
    assert stopped == ["Good"]


async def test_stops_agents_in_reverse_order_even_when_the_body_fails() -> None:
    stopped: list[str] = []

    class First(MicroAgent):
        @on("post_stop")
        def gone(self) -> None:
            stopped.append("First")

    class Second(MicroAgent):
        @on("post_stop")
        def gone(self) -> None:
            stopped.append("Second")

    with pytest.raises(ValueError, match="body"):
        async with run_agents(First, Second):
            raise ValueError("body")
    assert stopped == ["Second", "First"]
