"""Counting middleware (``Middleware.counter``, what Metrics uses) is told the same outcomes
as ``handling``/``handled`` on every engine: alone (the fast path, no Handling made) and
beside a middleware that takes Handling events; a counter that raises costs no message."""

from __future__ import annotations

import pytest

from microhive import RemoteError
from microhive.middleware import Counter, Middleware

from .conftest import Factory
from .helpers import eventually
from .test_middleware import Answering, Recorder, Worker


class Tally:
    def __init__(self, key: tuple[str, str, str, str], runs: list[tuple[str, ...]]) -> None:
        self.key = key
        self.runs = runs

    def started(self, size: int) -> None:
        self.runs.append(("started", self.key[0], self.key[3]))

    def ended(self, outcome: str, duration: float, size: int) -> None:
        assert duration >= 0 and size == 1
        self.runs.append(("ended", self.key[0], self.key[3], outcome))


class Counting(Middleware):
    def __init__(self) -> None:
        self.runs: list[tuple[str, ...]] = []
        self.asked: list[tuple[str, str, str, str]] = []

    def counter(self, kind: str, agent: str, handler: str, name: str) -> Counter | None:
        self.asked.append((kind, agent, handler, name))
        return Tally((kind, agent, handler, name), self.runs)


class BrokenCounter(Middleware):
    class Fails:
        def started(self, size: int) -> None:
            raise RuntimeError("a counter bug must not cost a message")

        def ended(self, outcome: str, duration: float, size: int) -> None:
            raise RuntimeError("nor here")

    def counter(self, kind: str, agent: str, handler: str, name: str) -> Counter | None:
        return self.Fails()


def ended(counting: Counting) -> list[tuple[str, ...]]:
    return sorted(run for run in counting.runs if run[0] == "ended")


EXPECTED = [
    ("ended", "message", "jobs", "acked"),
    ("ended", "message", "jobs", "acked"),
    ("ended", "message", "jobs", "dead-lettered"),
    ("ended", "message", "jobs", "retried"),
]


@pytest.mark.parametrize("beside", ["alone", "with handling"])
async def test_consumers_are_counted(factory: Factory, beside: str) -> None:
    counting, recorder = Counting(), Recorder()
    others: list[Middleware] = [recorder] if beside == "with handling" else []
    broker = await factory.broker(middleware=[counting, *others])
    agent = Worker(broker=broker, settings={"headers": []})
    async with agent:
        for n in (1, 2, 3):
            await broker.jobs.send({"n": n})
        await eventually(lambda: len(ended(counting)) == 4, 30)
    assert ended(counting) == EXPECTED
    assert [run for run in counting.runs if run[0] == "started"] == [
        ("started", "message", "jobs")
    ] * 4
    assert counting.asked == [("message", agent.name, "job", "jobs")], "bound once"
    if others:
        assert len(recorder.ended) == 4, "Handling middleware is told as before"


async def test_a_failing_counter_costs_no_message(factory: Factory) -> None:
    counting = Counting()
    broker = await factory.broker(middleware=[BrokenCounter(), counting])
    agent = Worker(broker=broker, settings={"headers": []})
    async with agent:
        for n in (1, 2, 3):
            await broker.jobs.send({"n": n})
        await eventually(lambda: len(ended(counting)) == 4, 30)
    assert ended(counting) == EXPECTED


async def test_receivers_and_calls_are_counted(factory: Factory) -> None:
    counting = Counting()
    bus = await factory.bus(middleware=[counting])
    agent = Answering(bus=bus, settings={"headers": []})
    async with agent:
        assert await bus.ping.call("me", n=1, timeout=10) == 2
        with pytest.raises(RemoteError):
            await bus.ping.call("me", n=-1, timeout=10)
        await bus.ping.send("me", n=5)
        await eventually(lambda: len(ended(counting)) == 3, 30)
    assert ended(counting) == [
        ("ended", "call", "ping", "failed"),
        ("ended", "call", "ping", "ok"),
        ("ended", "signal", "ping", "ok"),
    ]
