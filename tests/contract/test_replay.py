"""Replay: read a queue's recent history and follow it, without taking messages from consumers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from microhive import (
    Backoff,
    CapabilityError,
    ConfigurationError,
    Envelope,
    MicroAgent,
    Namespace,
    Queue,
    consumer,
    private_catalog,
)

from .conftest import QUEUES, Factory
from .helpers import eventually


def needs_replay(broker: object) -> None:
    if not broker.capabilities.replay:  # type: ignore[attr-defined]
        pytest.skip("transport has no replay: covered by test_tail_is_refused_without_replay")


async def take(stream: AsyncIterator[Envelope], count: int, timeout: float = 10) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(timeout):
        async for message in stream:
            got.append(message.payload["n"])
            if len(got) == count:
                break
    return got


async def test_tail_replays_the_last_messages_then_follows(factory: Factory) -> None:
    broker = await factory.broker()
    needs_replay(broker)
    for n in range(10):
        await broker.jobs.send({"n": n})
    stream = broker.jobs.tail(last=3)
    assert await take(stream, 3) == [7, 8, 9], "the last three, oldest first"
    follower = asyncio.ensure_future(take(stream, 2))
    await asyncio.sleep(0.2)  # the follower is waiting for new messages
    await broker.jobs.send({"n": 10})
    await broker.jobs.send({"n": 11})
    assert await follower == [10, 11]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_tail_without_history_only_follows(factory: Factory) -> None:
    broker = await factory.broker()
    needs_replay(broker)
    await broker.jobs.send({"n": 1})
    stream = broker.jobs.tail()
    follower = asyncio.ensure_future(take(stream, 1))
    await asyncio.sleep(0.2)
    await broker.jobs.send({"n": 2})
    assert await follower == [2]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_tail_takes_nothing_from_consumers(factory: Factory) -> None:
    broker = await factory.broker()
    needs_replay(broker)

    class Worker(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n: int) -> None:
            self.settings["done"].append(n)

    for n in range(5):
        await broker.jobs.send({"n": n})
    assert await take(broker.jobs.tail(last=5), 5) == [0, 1, 2, 3, 4]
    agent = Worker(broker=await factory.broker(), settings={"done": []})
    async with agent:
        await eventually(lambda: len(agent.settings["done"]) == 5)
    assert sorted(agent.settings["done"]) == [0, 1, 2, 3, 4]


async def test_tail_is_refused_without_replay(factory: Factory) -> None:
    broker = await factory.broker()
    if broker.capabilities.replay:
        pytest.skip("transport supports replay")
    with pytest.raises(CapabilityError, match="replay"):
        broker.jobs.tail(last=1)


@pytest.mark.parametrize("last", [-1, 1.5, True, "3"])
async def test_tail_checks_its_argument(factory: Factory, last: object) -> None:
    broker = await factory.broker()
    needs_replay(broker)
    with pytest.raises(ConfigurationError, match="last"):
        broker.jobs.tail(last=last)  # type: ignore[arg-type]


async def test_tail_shows_a_retried_message_once(factory: Factory) -> None:
    broker = await factory.broker()
    needs_replay(broker)

    class Flaky(MicroAgent):
        @consumer(QUEUES.jobs, retries=2, backoff=Backoff(0.05, jitter=0))
        async def job(self, n: int) -> None:
            self.settings["tries"].append(n)
            if len(self.settings["tries"]) == 1:
                raise ValueError("first attempt fails")

    agent = Flaky(broker=await factory.broker(), settings={"tries": []})
    async with agent:
        await broker.jobs.send({"n": 1})
        await eventually(lambda: len(agent.settings["tries"]) == 2)
    seen: list[int] = []
    stream = broker.jobs.tail(last=10)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.5):
            async for message in stream:
                seen.append(message.payload["n"])
    await stream.aclose()  # type: ignore[attr-defined]
    assert seen == [1], "a retry is not a new message"


class Reading(BaseModel):
    sat: str
    lat: float


async def test_tail_gives_models_where_the_queue_has_a_schema(factory: Factory) -> None:
    readings = Queue("readings", schema=Reading)
    broker = await factory.broker(queues=Namespace([readings], kind="queue"))
    needs_replay(broker)
    with private_catalog():  # a producer elsewhere that knows no schema
        plain = await factory.broker(queues=Namespace([Queue("readings")], kind="queue"))
    await broker.readings.send({"sat": "terra", "lat": 1.5})
    await plain.readings.send({"sat": "aqua"})  # no latitude: does not fit the schema
    await broker.readings.send(Reading(sat="aqua", lat=-3))
    got: list[Reading] = []
    stream = broker.readings.tail(last=3)
    async with asyncio.timeout(10):
        async for message in stream:
            got.append(message.payload)
            if len(got) == 2:
                break
    await stream.aclose()  # type: ignore[attr-defined]
    assert got == [Reading(sat="terra", lat=1.5), Reading(sat="aqua", lat=-3)]
